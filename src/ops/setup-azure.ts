import { createHash } from 'node:crypto';
import { SECRET_HEADER } from '../auth/event-grid-auth.ts';
import type { ReplicationConfig, ReplicationRule } from '../config/schema.ts';
import { OWN_CLIENT_REQUEST_ID_PREFIX } from '../core/metadata.ts';
import { allowed } from '../core/route.ts';
import { UsageError } from '../errors.ts';
import { accountNameOf, isEmulatorHost } from '../stores/clients.ts';

/*
 * `s3az setup azure` writes an ARM template per storage account and prints the `az` commands
 * that deploy it, rather than calling Azure's management SDK. Why:
 * - no new dependency: `@azure/arm-eventgrid` and its `core-lro`/`core-paging` stack would be
 *   the only management-plane code in the package, for one command run once per setup;
 * - the deployment runs as whoever runs `az` (their `az login`, their RBAC), which is who has
 *   to hold Event Grid and storage management rights anyway, not as a credential s3az finds;
 * - `az deployment group what-if` shows the difference against the live subscriptions, which
 *   no offline dry run can; an ARM deployment is a create-or-update by name, so a re-run
 *   updates the subscriptions instead of duplicating them;
 * - the shared secret stays out of s3az altogether: it is a `securestring` template parameter
 *   the printed command fills from Secrets Manager at deploy time, so neither the template
 *   file, nor what s3az prints, nor ARM's deployment history holds it.
 * https://learn.microsoft.com/azure/azure-resource-manager/templates/deploy-cli
 * https://learn.microsoft.com/azure/azure-resource-manager/templates/deploy-what-if
 */

/** Stable Event Grid management API of the template (2025-02-15). */
export const EVENT_GRID_API_VERSION = '2025-02-15';
/** Storage management API used for the dead-letter container. */
export const STORAGE_API_VERSION = '2023-05-01';

/** Default container (in each storage account) that undeliverable events are written to. */
export const DEFAULT_DEAD_LETTER_CONTAINER = 's3az-dead-letters';

/**
 * Retry defaults: Event Grid's own maxima (30 attempts, 24 hours), so that a stack that is
 * down or being redeployed for hours loses nothing; what still fails is dead-lettered.
 * https://learn.microsoft.com/azure/event-grid/manage-event-delivery
 */
export const DEFAULT_MAX_DELIVERY_ATTEMPTS = 30;
export const DEFAULT_EVENT_TTL_MINUTES = 1440;

/**
 * Event subscription names: 3-64 characters of a-z, A-Z, 0-9 and "-".
 * https://learn.microsoft.com/azure/event-grid/subscription-creation-schema
 */
const NAME_LIMIT = 64;
/** ARM deployment names: at most 64 characters of letters, digits, "-", "_", ".", "(", ")". */
const DEPLOYMENT_NAME_LIMIT = 64;
/**
 * Event subscriptions per topic (a storage account's system topic included): 500, not
 * raisable. https://learn.microsoft.com/azure/event-grid/quotas-limits
 */
const SUBSCRIPTIONS_PER_TOPIC = 500;

const SECRET_PARAMETER = 'webhookSecret';

const BLOB_CREATED = 'Microsoft.Storage.BlobCreated';
const BLOB_DELETED = 'Microsoft.Storage.BlobDeleted';
const BLOB_RENAMED = 'Microsoft.Storage.BlobRenamed';
const DIRECTORY_RENAMED = 'Microsoft.Storage.DirectoryRenamed';
const DIRECTORY_DELETED = 'Microsoft.Storage.DirectoryDeleted';

/** A JSON value, as an ARM template holds it. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** An ARM deployment template (resource-group scope). */
export interface ArmTemplate {
  $schema: string;
  contentVersion: string;
  metadata: { [key: string]: Json };
  parameters: { [key: string]: Json };
  resources: { [key: string]: Json }[];
}

/** Where a storage account lives in Azure Resource Manager. */
export interface AccountLocation {
  subscription: string;
  resourceGroup: string;
}

/** How Event Grid authenticates its deliveries to the webhook (the configuration's `eventGrid.auth`). */
export type WebhookAuth = NonNullable<ReplicationConfig['eventGrid']>['auth'];

/** Why a subscription exists; a rule has two or three of them. */
export type SubscriptionPurpose = 'changes' | 'changes-without-client-request-id' | 'moves';

/** One event subscription as setup makes it, for printing and for `--remove`. */
export interface PlannedSubscription {
  name: string;
  rule: string;
  purpose: SubscriptionPurpose;
  includedEventTypes: string[];
  subjectBeginsWith: string;
  advancedFilters: { operatorType: string; key: string; values?: string[] }[];
}

/** What setup does for one storage account: one template, one deployment. */
export interface AccountPlan {
  account: string;
  subscription: string;
  resourceGroup: string;
  storageAccountId: string;
  /** Whether the account is treated as ADLS Gen2 (rename and directory events). */
  hierarchicalNamespace: boolean;
  deploymentName: string;
  templateFile: string;
  eventSubscriptions: PlannedSubscription[];
  /** Absent for `--remove`. */
  template?: ArmTemplate;
  /** The `az` commands to run, in order (with `--remove`, the deletes). */
  commands: string[];
}

export interface SetupAzureOptions {
  rules: ReplicationRule[];
  /** Names the subscriptions (`s3az-<stack>-<rule>`) and deployments; `local` for a local mirror. */
  stackName: string;
  /** Required unless `remove`. */
  webhookUrl?: string;
  /** Required unless `remove`. */
  auth?: WebhookAuth;
  /** The location of each account (by name), else `defaultLocation`. */
  accounts?: ReadonlyMap<string, AccountLocation>;
  defaultLocation?: Partial<AccountLocation>;
  /**
   * Accounts known to have no hierarchical namespace (`true`: all of them): they get no
   * rename/directory subscription. Others are treated as possibly ADLS Gen2.
   */
  flatAccounts?: ReadonlySet<string> | true;
  /**
   * A container name (made in each account by the template), or the resource id of an
   * existing container `/subscriptions/…/storageAccounts/<a>/blobServices/default/containers/<c>`.
   */
  deadLetter?: string;
  maxDeliveryAttempts?: number;
  eventTimeToLiveInMinutes?: number;
  /** Folder the templates are written to (for the printed commands). */
  templateDir?: string;
  remove?: boolean;
}

/** Quotes a word for a POSIX shell when it needs it. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * A string as an ARM template literal: one that starts with "[" and ends with "]" would be
 * evaluated as an expression, so it gets the documented "[[" escape.
 * https://learn.microsoft.com/azure/azure-resource-manager/templates/template-expressions#escape-characters
 */
export function armLiteral(text: string): string {
  return text.startsWith('[') && text.endsWith(']') ? `[${text}` : text;
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8);
}

/**
 * A deterministic name within a limit and an alphabet: the readable name when it fits and
 * needs no change; otherwise its allowed characters, shortened, and a hash of the full name
 * (so that two names that differ only in replaced characters stay apart). `suffix` is kept.
 */
function fitName(head: string, suffix: string, limit: number, disallowed: RegExp): string {
  const plain = `${head}${suffix}`;
  const cleaned = head.replace(disallowed, '-');
  if (cleaned === head && plain.length <= limit) return plain;
  const room = limit - suffix.length - 9;
  return `${cleaned.slice(0, room).replace(/-+$/, '')}-${shortHash(plain)}${suffix}`;
}

const PURPOSE_SUFFIX: Record<SubscriptionPurpose, string> = {
  changes: '',
  'changes-without-client-request-id': '-noid',
  moves: '-moves',
};

/**
 * The event subscription name of a rule's subscription: `s3az-<stack>-<rule>` (with `-noid` or
 * `-moves`), the same on every run so that a re-run updates it and `--remove` finds it.
 */
export function eventSubscriptionName(
  stackName: string,
  rule: string,
  purpose: SubscriptionPurpose,
): string {
  return fitName(
    `s3az-${stackName}-${rule}`,
    PURPOSE_SUFFIX[purpose],
    NAME_LIMIT,
    /[^A-Za-z0-9-]/g,
  );
}

/** The ARM deployment name for one account's template. */
export function deploymentName(stackName: string, account: string): string {
  return fitName(`s3az-${stackName}-${account}`, '', DEPLOYMENT_NAME_LIMIT, /[^A-Za-z0-9_.()-]/g);
}

/** `/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<a>`. */
export function storageAccountId(account: string, location: AccountLocation): string {
  return `/subscriptions/${location.subscription}/resourceGroups/${location.resourceGroup}/providers/Microsoft.Storage/storageAccounts/${account}`;
}

const SUBSCRIPTION_ID = /^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$/i;
// 1-90 letters, digits, "_", "-", ".", "(", ")", not ending in ".".
// https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
const RESOURCE_GROUP = /^[-\w.()]{0,89}[-\w()]$/u;
const STORAGE_ACCOUNT_ID =
  /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Storage\/storageAccounts\/([a-z0-9]{3,24})$/i;
const CONTAINER_ID =
  /^(\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Storage\/storageAccounts\/[a-z0-9]{3,24})\/blobServices\/default\/containers\/([a-z0-9-]{3,63})$/i;
const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;

function checkLocation(location: Partial<AccountLocation>, what: string): AccountLocation {
  const { subscription, resourceGroup } = location;
  if (subscription === undefined || resourceGroup === undefined) {
    throw new UsageError(
      `${what}: its Azure subscription and resource group are needed: --subscription <id> --resource-group <name>, or --account <account>=<resource group or storage account resource id>`,
    );
  }
  if (!SUBSCRIPTION_ID.test(subscription)) {
    throw new UsageError(`${what}: "${subscription}" is not a subscription id (a GUID)`);
  }
  if (!RESOURCE_GROUP.test(resourceGroup)) {
    throw new UsageError(`${what}: "${resourceGroup}" is not a resource group name`);
  }
  return { subscription, resourceGroup };
}

/**
 * Parses one `--account` mapping: `<account>=<resource group>` (with `--subscription`), or
 * `<account>=<its resource id>`.
 */
export function parseAccountMapping(
  text: string,
  defaultSubscription?: string,
): [string, Partial<AccountLocation>] {
  const at = text.indexOf('=');
  const account = text.slice(0, at).trim().toLowerCase();
  const value = text.slice(at + 1).trim();
  if (at < 1 || value === '' || !/^[a-z0-9]{3,24}$/.test(account)) {
    throw new UsageError(
      `--account: "${text}" is not <storage account>=<resource group> or <storage account>=<its resource id>`,
    );
  }
  if (value.startsWith('/')) {
    const match = STORAGE_ACCOUNT_ID.exec(value);
    if (!match || match[3]?.toLowerCase() !== account) {
      throw new UsageError(
        `--account: "${value}" is not the resource id of storage account ${account} (/subscriptions/<id>/resourceGroups/<name>/providers/Microsoft.Storage/storageAccounts/${account})`,
      );
    }
    return [account, { subscription: match[1] as string, resourceGroup: match[2] as string }];
  }
  return [
    account,
    {
      resourceGroup: value,
      ...(defaultSubscription !== undefined && { subscription: defaultSubscription }),
    },
  ];
}

/** The rules whose Azure side is a source of changes: only they need Event Grid. */
export function rulesNeedingEvents(rules: ReplicationRule[]): ReplicationRule[] {
  return rules.filter((rule) => allowed(rule, 'azure'));
}

function accountOfRule(rule: ReplicationRule): string {
  const url = new URL(rule.azure.accountUrl);
  if (isEmulatorHost(url.hostname)) {
    throw new UsageError(
      `rule "${rule.name}": ${rule.azure.accountUrl} is an emulator; Event Grid subscribes only to Azure storage accounts (the local mirror publishes its own events)`,
    );
  }
  // https://<account>.blob.core.windows.net (or .dfs., or another cloud's suffix).
  return accountNameOf(rule.azure.accountUrl).toLowerCase();
}

/**
 * The subject of a blob in a container under a prefix, as Blob Storage events carry it.
 * https://learn.microsoft.com/azure/event-grid/event-filtering#subject-filtering
 */
export function blobSubject(container: string, prefix: string): string {
  return `/blobServices/default/containers/${container}/blobs/${prefix}`;
}

/**
 * The subscriptions a rule needs. Why two for its changes: the filter that keeps the
 * replicator's own writes out, `data.clientRequestId` StringNotBeginsWith `s3az-replicator-`,
 * does not match an event without that key, and Event Grid's filters are ANDed, so it cannot
 * say "or absent". SFTP events and some deletes carry no clientRequestId; with that filter
 * alone they would never be delivered. The second subscription takes exactly those
 * (IsNullOrUndefined), so the two are disjoint and together are every change but the
 * replicator's own.
 * https://learn.microsoft.com/azure/event-grid/event-filtering#advanced-filtering
 * https://learn.microsoft.com/azure/event-grid/event-schema-blob-storage#sftp-events
 *
 * Why a third on ADLS Gen2: a rename's subject is its new name and a directory event's is the
 * directory, so the prefix filter would miss a file moved out of the prefix (its old name's
 * delete) and a rename or delete of the prefix's own directory or one above it. That
 * subscription filters on the container only; the plan step drops what no rule covers. The
 * replicator never renames on Azure, so it needs no own-writes filter. Flat accounts never
 * emit these events, so subscribing to them there costs nothing (`--flat` leaves it out).
 */
export function plannedSubscriptions(
  rule: ReplicationRule,
  stackName: string,
  hierarchicalNamespace: boolean,
): PlannedSubscription[] {
  const changeTypes = [BLOB_CREATED, ...(rule.deletes === 'mirror' ? [BLOB_DELETED] : [])];
  const subject = blobSubject(rule.azure.container, rule.azure.prefix);
  const planned: PlannedSubscription[] = [
    {
      name: eventSubscriptionName(stackName, rule.name, 'changes'),
      rule: rule.name,
      purpose: 'changes',
      includedEventTypes: changeTypes,
      subjectBeginsWith: subject,
      advancedFilters: [
        {
          operatorType: 'StringNotBeginsWith',
          key: 'data.clientRequestId',
          values: [OWN_CLIENT_REQUEST_ID_PREFIX],
        },
      ],
    },
    {
      name: eventSubscriptionName(stackName, rule.name, 'changes-without-client-request-id'),
      rule: rule.name,
      purpose: 'changes-without-client-request-id',
      includedEventTypes: changeTypes,
      subjectBeginsWith: subject,
      advancedFilters: [{ operatorType: 'IsNullOrUndefined', key: 'data.clientRequestId' }],
    },
  ];
  if (hierarchicalNamespace) {
    planned.push({
      name: eventSubscriptionName(stackName, rule.name, 'moves'),
      rule: rule.name,
      purpose: 'moves',
      includedEventTypes: [
        BLOB_RENAMED,
        DIRECTORY_RENAMED,
        ...(rule.deletes === 'mirror' ? [DIRECTORY_DELETED] : []),
      ],
      subjectBeginsWith: `/blobServices/default/containers/${rule.azure.container}/`,
      advancedFilters: [],
    });
  }
  return planned;
}

/**
 * The webhook destination with its authentication. Entra ID: Event Grid gets a token for the
 * webhook's application from the tenant, as its own first-party app, which is what the webhook
 * checks (`azp`/`appid`); `deliveryWithResourceIdentity` would make the system topic's managed
 * identity the caller and the webhook would refuse it, and auto-created system topics have no
 * identity anyway. Shared secret: a static delivery attribute (a header on every delivery and
 * on the validation handshake), marked secret so Event Grid does not show it back; its value is
 * the secure parameter. Batches of at most 10 events (one SQS SendMessageBatch), 64 KB
 * preferred, far below the webhook's 1 MiB limit; TLS 1.2 at least.
 * https://learn.microsoft.com/azure/event-grid/secure-webhook-delivery
 * https://learn.microsoft.com/azure/event-grid/delivery-properties
 * https://learn.microsoft.com/azure/event-grid/delivery-and-retry#batched-event-delivery
 */
function destination(webhookUrl: string, auth: WebhookAuth): { [key: string]: Json } {
  const properties: { [key: string]: Json } = {
    endpointUrl: armLiteral(webhookUrl),
    maxEventsPerBatch: 10,
    preferredBatchSizeInKilobytes: 64,
    minimumTlsVersionAllowed: '1.2',
  };
  if (auth.mode === 'entra') {
    properties.azureActiveDirectoryTenantId = armLiteral(auth.tenantId);
    properties.azureActiveDirectoryApplicationIdOrUri = armLiteral(auth.audience);
  } else if (auth.mode === 'shared-secret') {
    properties.deliveryAttributeMappings = [
      {
        name: SECRET_HEADER,
        type: 'Static',
        properties: { value: `[parameters('${SECRET_PARAMETER}')]`, isSecret: true },
      },
    ];
  }
  return { endpointType: 'WebHook', properties };
}

/** Where dead letters go: the container named in each account, or one existing container. */
interface DeadLetterTarget {
  /** The storage account resource id and container. */
  resourceId: string;
  container: string;
  /** Whether the template makes the container (in the source account). */
  create: boolean;
}

function deadLetterTarget(spec: string, accountId: string): DeadLetterTarget {
  if (spec.startsWith('/')) {
    const match = CONTAINER_ID.exec(spec);
    if (!match) {
      throw new UsageError(
        `--dead-letter: "${spec}" is neither a container name nor a container's resource id (/subscriptions/<id>/resourceGroups/<name>/providers/Microsoft.Storage/storageAccounts/<account>/blobServices/default/containers/<container>)`,
      );
    }
    return { resourceId: match[1] as string, container: match[2] as string, create: false };
  }
  if (!CONTAINER_NAME.test(spec)) {
    throw new UsageError(`--dead-letter: "${spec}" is not a valid container name`);
  }
  return { resourceId: accountId, container: spec, create: true };
}

function checkRange(value: number, low: number, high: number, option: string): number {
  if (!Number.isInteger(value) || value < low || value > high) {
    throw new UsageError(`${option}: ${value} is not a whole number from ${low} to ${high}`);
  }
  return value;
}

/**
 * Checks the webhook URL: Event Grid delivers to HTTPS endpoints only; a secret in its query
 * (`code=`) would be printed, written to the template and kept in ARM's deployment history,
 * so the secret goes as the secure delivery attribute instead.
 * https://learn.microsoft.com/azure/event-grid/webhook-event-delivery
 */
export function checkWebhookUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--webhook-url: "${text}" is not a URL`);
  }
  if (url.protocol !== 'https:') {
    throw new UsageError(
      `--webhook-url: Event Grid delivers only to https:// endpoints, not ${text}`,
    );
  }
  if ([...url.searchParams.keys()].some((key) => key.toLowerCase() === 'code')) {
    throw new UsageError(
      '--webhook-url: leave the secret out of the URL (it would be printed and kept in the deployment); setup passes it as the x-s3az-secret delivery attribute',
    );
  }
  return url.href;
}

function checkAuth(auth: WebhookAuth | undefined): WebhookAuth {
  if (auth === undefined) {
    throw new UsageError(
      'eventGrid.auth is not configured: the webhook refuses every delivery until it says how Event Grid authenticates (entra or shared-secret)',
    );
  }
  if (auth.mode === 'none') {
    throw new UsageError(
      'eventGrid.auth mode none is for the local mirror only; Event Grid on Azure must authenticate (entra or shared-secret)',
    );
  }
  return auth;
}

/**
 * The ARM template for one account: the dead-letter container (when it is made in the
 * account) and each rule's event subscriptions, as extension resources scoped to the storage
 * account. Scoping them to the account (rather than declaring a
 * `Microsoft.EventGrid/systemTopics` resource) lets Event Grid use the account's system topic,
 * or make one, whatever its name: a source may have only one system topic, so declaring one
 * fails where the portal or another tool already made it.
 * https://learn.microsoft.com/azure/event-grid/system-topics
 * https://learn.microsoft.com/azure/azure-resource-manager/templates/scope-extension-resources
 */
function accountTemplate(
  account: string,
  subscriptions: PlannedSubscription[],
  context: {
    stackName: string;
    webhookUrl: string;
    auth: WebhookAuth;
    deadLetter: DeadLetterTarget;
    maxDeliveryAttempts: number;
    eventTimeToLiveInMinutes: number;
  },
): ArmTemplate {
  const { deadLetter } = context;
  const resources: { [key: string]: Json }[] = [];
  const containerResource = `[resourceId('Microsoft.Storage/storageAccounts/blobServices/containers', '${account}', 'default', '${deadLetter.container}')]`;
  if (deadLetter.create) {
    resources.push({
      type: 'Microsoft.Storage/storageAccounts/blobServices/containers',
      apiVersion: STORAGE_API_VERSION,
      name: `${account}/default/${deadLetter.container}`,
      properties: { publicAccess: 'None' },
    });
  }
  for (const planned of subscriptions) {
    resources.push({
      type: 'Microsoft.EventGrid/eventSubscriptions',
      apiVersion: EVENT_GRID_API_VERSION,
      name: planned.name,
      scope: `Microsoft.Storage/storageAccounts/${account}`,
      ...(deadLetter.create && { dependsOn: [containerResource] }),
      properties: {
        destination: destination(context.webhookUrl, context.auth),
        eventDeliverySchema: 'EventGridSchema',
        filter: {
          includedEventTypes: planned.includedEventTypes,
          subjectBeginsWith: armLiteral(planned.subjectBeginsWith),
          // Blob names are case-sensitive; Event Grid's subject match is not, by default.
          isSubjectCaseSensitive: true,
          // data.clientRequestId is a string, not an array.
          enableAdvancedFilteringOnArrays: false,
          advancedFilters: planned.advancedFilters.map((filter) => ({
            operatorType: filter.operatorType,
            key: filter.key,
            ...(filter.values && { values: filter.values }),
          })),
        },
        retryPolicy: {
          maxDeliveryAttempts: context.maxDeliveryAttempts,
          eventTimeToLiveInMinutes: context.eventTimeToLiveInMinutes,
        },
        // A webhook's 400 or 413 (and 401/403) is dead-lettered at once, or dropped without a
        // destination. https://learn.microsoft.com/azure/event-grid/delivery-and-retry
        deadLetterDestination: {
          endpointType: 'StorageBlob',
          properties: {
            resourceId: deadLetter.resourceId,
            blobContainerName: deadLetter.container,
          },
        },
        labels: [
          's3az',
          armLiteral(`stack:${context.stackName}`),
          armLiteral(`rule:${planned.rule}`),
        ],
      },
    });
  }
  return {
    $schema: 'https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#',
    contentVersion: '1.0.0.0',
    metadata: {
      generator: 's3az setup azure',
      stack: context.stackName,
      webhook: armLiteral(context.webhookUrl),
    },
    parameters:
      context.auth.mode === 'shared-secret'
        ? {
            [SECRET_PARAMETER]: {
              type: 'securestring',
              metadata: {
                description: `the webhook's shared secret, sent as the ${SECRET_HEADER} header`,
              },
            },
          }
        : {},
    resources,
  };
}

/**
 * The `--parameters` argument that fills the secret at deploy time, in the printed command:
 * the shell reads it from Secrets Manager (or the variable), so the command as printed holds
 * no secret. `$(…)` drops the trailing newline; the webhook also trims what it reads.
 */
export function secretParameterArgument(auth: WebhookAuth): string | undefined {
  if (auth.mode !== 'shared-secret') return undefined;
  if ('secretEnv' in auth) return `${SECRET_PARAMETER}="$${auth.secretEnv}"`;
  const region = auth.secretArn.split(':')[3];
  return `${SECRET_PARAMETER}="$(aws secretsmanager get-secret-value${region ? ` --region ${shellQuote(region)}` : ''} --secret-id ${shellQuote(auth.secretArn)} --query SecretString --output text)"`;
}

function deployCommands(plan: Omit<AccountPlan, 'commands'>, auth: WebhookAuth): string[] {
  const common = [
    `--subscription ${shellQuote(plan.subscription)}`,
    `--resource-group ${shellQuote(plan.resourceGroup)}`,
    `--name ${shellQuote(plan.deploymentName)}`,
    `--template-file ${shellQuote(plan.templateFile)}`,
  ];
  const secret = secretParameterArgument(auth);
  const parameters = secret ? [`--parameters ${secret}`] : [];
  return [
    // What-if first: the difference against what is deployed now.
    ['az deployment group what-if', ...common, ...parameters].join(' '),
    // Incremental: resources of the group that the template does not name are left alone.
    ['az deployment group create', '--mode Incremental', ...common, ...parameters].join(' '),
  ];
}

/**
 * Plans `s3az setup azure`: per storage account (from each rule's `azure.accountUrl`), the ARM
 * template with each rule's event subscriptions and the `az` commands that deploy it, or with
 * `remove` the commands that delete exactly those subscriptions. Pure: nothing is read or
 * written. Refuses (UsageError) what Azure would refuse or what would lose events.
 */
export function planSetupAzure(options: SetupAzureOptions): AccountPlan[] {
  const rules = rulesNeedingEvents(options.rules);
  if (rules.length === 0) return [];
  const remove = options.remove === true;
  const webhookUrl = remove ? '' : checkWebhookUrl(options.webhookUrl ?? '');
  const auth = remove ? undefined : checkAuth(options.auth);
  const maxDeliveryAttempts = checkRange(
    options.maxDeliveryAttempts ?? DEFAULT_MAX_DELIVERY_ATTEMPTS,
    1,
    30,
    '--max-delivery-attempts',
  );
  const eventTimeToLiveInMinutes = checkRange(
    options.eventTimeToLiveInMinutes ?? DEFAULT_EVENT_TTL_MINUTES,
    1,
    1440,
    '--event-ttl',
  );
  const byAccount = new Map<string, ReplicationRule[]>();
  for (const rule of rules) {
    const account = accountOfRule(rule);
    byAccount.set(account, [...(byAccount.get(account) ?? []), rule]);
  }
  // A name that matches no rule's account is a typo that would silently change nothing.
  const named = [
    ...[...(options.accounts?.keys() ?? [])].map((name) => ['--account', name]),
    ...(options.flatAccounts instanceof Set ? [...options.flatAccounts] : []).map((name) => [
      '--flat',
      name,
    ]),
  ];
  for (const [option, name] of named) {
    if (!byAccount.has(name as string)) {
      throw new UsageError(
        `${option}: no rule that replicates from Azure uses storage account ${name} (they use ${[...byAccount.keys()].join(', ')})`,
      );
    }
  }
  const plans: AccountPlan[] = [];
  for (const [account, accountRules] of byAccount) {
    const location = checkLocation(
      options.accounts?.get(account) ?? options.defaultLocation ?? {},
      `storage account ${account} (rule "${accountRules[0]?.name}")`,
    );
    const accountId = storageAccountId(account, location);
    // `--remove` deletes the rename subscription too, whatever --flat said at setup: by ARM's
    // resource-provider contract a delete of what does not exist answers 204 (Event Grid's
    // API lists 200, 202 and 204 for EventSubscriptions_Delete), so it is not an error.
    const hierarchicalNamespace =
      remove || (options.flatAccounts !== true && options.flatAccounts?.has(account) !== true);
    const deadLetter = deadLetterTarget(
      options.deadLetter ?? DEFAULT_DEAD_LETTER_CONTAINER,
      accountId,
    );
    const clash = accountRules.find(
      (rule) =>
        rule.azure.container === deadLetter.container &&
        deadLetter.resourceId.toLowerCase() === accountId.toLowerCase(),
    );
    if (clash) {
      throw new UsageError(
        `--dead-letter: rule "${clash.name}" replicates container ${deadLetter.container} of ${account}; dead letters written there would be replicated too: name another container`,
      );
    }
    const eventSubscriptions = accountRules.flatMap((rule) =>
      plannedSubscriptions(rule, options.stackName, hierarchicalNamespace),
    );
    const names = new Map<string, string>();
    for (const planned of eventSubscriptions) {
      const other = names.get(planned.name);
      if (other !== undefined && other !== planned.rule) {
        throw new UsageError(
          `rules "${other}" and "${planned.rule}" give the same event subscription name ${planned.name}; rename one of them`,
        );
      }
      names.set(planned.name, planned.rule);
    }
    if (eventSubscriptions.length > SUBSCRIPTIONS_PER_TOPIC) {
      throw new UsageError(
        `storage account ${account}: ${eventSubscriptions.length} event subscriptions, more than the ${SUBSCRIPTIONS_PER_TOPIC} Event Grid allows on one account`,
      );
    }
    const base = {
      account,
      subscription: location.subscription,
      resourceGroup: location.resourceGroup,
      storageAccountId: accountId,
      hierarchicalNamespace,
      deploymentName: deploymentName(options.stackName, account),
      templateFile: `${options.templateDir ?? '.'}/${account}.eventgrid.json`,
      eventSubscriptions,
    };
    if (remove || auth === undefined) {
      plans.push({
        ...base,
        commands: eventSubscriptions.map(
          (planned) =>
            `az eventgrid event-subscription delete --name ${shellQuote(planned.name)} --source-resource-id ${shellQuote(accountId)}`,
        ),
      });
      continue;
    }
    const template = accountTemplate(account, eventSubscriptions, {
      stackName: options.stackName,
      webhookUrl,
      auth,
      deadLetter,
      maxDeliveryAttempts,
      eventTimeToLiveInMinutes,
    });
    const planned = { ...base, template };
    plans.push({ ...planned, commands: deployCommands(planned, auth) });
  }
  return plans;
}
