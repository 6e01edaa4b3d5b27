import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import type { ReplicationConfig } from '../config/schema.ts';
import { UsageError } from '../errors.ts';
import {
  type AccountLocation,
  type AccountPlan,
  DEFAULT_DEAD_LETTER_CONTAINER,
  DEFAULT_EVENT_TTL_MINUTES,
  DEFAULT_MAX_DELIVERY_ATTEMPTS,
  type PlannedSubscription,
  parseAccountMapping,
  planSetupAzure,
  rulesNeedingEvents,
  type SetupAzureOptions,
} from '../ops/setup-azure.ts';
import { resolveTarget, SERVICE_NAME, stackOutputs } from '../ops/target.ts';
import type { Environment } from '../stores/clients.ts';

interface Io {
  stdout: NodeJS.WritableStream;
  env?: Record<string, string | undefined>;
}

/** Where the templates are written unless `--out` says otherwise. */
export const DEFAULT_TEMPLATE_DIR = 's3az-azure';

/**
 * The stack's webhook: its `HttpApiUrl` output (which the Serverless Framework adds for an
 * HTTP API) and the `/eventgrid` route of serverless.yml.
 */
export async function stackWebhookUrl(stackName: string, env: Environment): Promise<string> {
  const { name, outputs } = await stackOutputs(stackName, env, ', or give --webhook-url');
  const base = outputs.get('HttpApiUrl');
  if (!base) {
    throw new UsageError(`${name} has no output HttpApiUrl; give the webhook with --webhook-url`);
  }
  return `${base.replace(/\/+$/, '')}/eventgrid`;
}

function wholeNumber(value: unknown, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !/^\d+$/.test(value)) {
    throw new UsageError(`${option}: "${String(value)}" is not a whole number`);
  }
  return Number(value);
}

function shortType(type: string): string {
  return type.replace(/^Microsoft\.Storage\./, '');
}

function describeSubscription(planned: PlannedSubscription): string {
  const filters = planned.advancedFilters.map(
    (filter) =>
      `${filter.key} ${filter.operatorType}${filter.values ? ` ${filter.values.join(', ')}` : ''}`,
  );
  return `${planned.name}: ${planned.includedEventTypes.map(shortType).join(', ')} under ${planned.subjectBeginsWith}${filters.length > 0 ? `, ${filters.join(', ')}` : ''}`;
}

function authText(auth: NonNullable<ReplicationConfig['eventGrid']>['auth'] | undefined): string {
  if (auth?.mode === 'entra') {
    return `Entra ID token for ${auth.audience} (tenant ${auth.tenantId})`;
  }
  if (auth?.mode === 'shared-secret') {
    return `shared secret in header x-s3az-secret, from ${'secretArn' in auth ? auth.secretArn : `$${auth.secretEnv}`} at deploy time`;
  }
  return 'none';
}

function planText(
  plan: AccountPlan,
  context: {
    remove: boolean;
    dryRun: boolean;
    webhookUrl: string | undefined;
    auth: NonNullable<ReplicationConfig['eventGrid']>['auth'] | undefined;
    retry: string;
    deadLetter: string;
  },
): string[] {
  const lines = [
    `storage account ${plan.account} (subscription ${plan.subscription}, resource group ${plan.resourceGroup})${plan.hierarchicalNamespace || context.remove ? '' : ', flat namespace'}`,
  ];
  if (context.remove) {
    for (const planned of plan.eventSubscriptions) {
      lines.push(`  ${context.dryRun ? 'would delete' : 'delete'} ${planned.name}`);
    }
    lines.push('  run:', ...plan.commands.map((command) => `    ${command}`));
    return lines;
  }
  for (const planned of plan.eventSubscriptions) lines.push(`  ${describeSubscription(planned)}`);
  lines.push(
    `  to ${context.webhookUrl} (${authText(context.auth)}); ${context.retry}; dead letters to ${context.deadLetter}`,
    `  ${context.dryRun ? 'would write' : 'wrote'} ${plan.templateFile} (deployment ${plan.deploymentName})`,
    `  ${context.dryRun ? 'then run' : 'run'}:`,
    ...plan.commands.map((command) => `    ${command}`),
  );
  return lines;
}

/**
 * `s3az setup azure`: the Event Grid subscriptions each rule needs on its storage account, as
 * one ARM template per account and the `az` commands that deploy it (or, `--remove`, delete
 * them). The templates hold no secret; `--dry-run` writes nothing.
 */
export async function runSetupAzure(
  options: Record<string, unknown>,
  io: Io = { stdout: process.stdout },
): Promise<void> {
  const env = io.env ?? process.env;
  const local = options.local !== undefined && options.local !== false;
  const remove = options.remove === true;
  const dryRun = options.dryRun === true;
  if (local && (options.stack !== undefined || options.stage !== undefined)) {
    throw new UsageError('--local works on the local mirror: leave out --stack and --stage');
  }
  const stackName = local
    ? 'local'
    : typeof options.stack === 'string'
      ? options.stack
      : `${SERVICE_NAME}-${typeof options.stage === 'string' ? options.stage : 'dev'}`;
  const awsEnv: Environment = {
    ...env,
    ...(typeof options.region === 'string' && { AWS_REGION: options.region }),
  };
  const webhookOption = typeof options.webhookUrl === 'string' ? options.webhookUrl : undefined;
  if (local && webhookOption === undefined && !remove) {
    throw new UsageError(
      "--local: Event Grid on Azure cannot reach the local mirror's webhook; expose it over HTTPS (a tunnel) and give that URL with --webhook-url",
    );
  }
  let config: ReplicationConfig;
  let targetName = `stack ${stackName}`;
  if (typeof options.config === 'string') {
    config = await loadConfig(options.config);
  } else if (local) {
    const target = await resolveTarget({ local: options.local as boolean | string }, env);
    if (!target.local) throw new UsageError('--local: no local mirror configuration');
    config = target.local.config;
    targetName = target.name;
  } else {
    throw new UsageError(
      '--config: the replication configuration the stack was deployed with is needed',
    );
  }
  const accounts = new Map<string, AccountLocation>();
  const defaultSubscription =
    typeof options.subscription === 'string' ? options.subscription : undefined;
  for (const mapping of (options.account as string[] | undefined) ?? []) {
    const [account, location] = parseAccountMapping(mapping, defaultSubscription);
    if (location.subscription === undefined) {
      throw new UsageError(
        `--account ${mapping}: the subscription is needed too: --subscription <id>, or the account's full resource id`,
      );
    }
    accounts.set(account, location as AccountLocation);
  }
  const flat =
    options.flat === 'all'
      ? true
      : new Set(
          typeof options.flat === 'string'
            ? options.flat
                .split(',')
                .map((name) => name.trim().toLowerCase())
                .filter((name) => name !== '')
            : [],
        );
  const maxDeliveryAttempts = wholeNumber(
    options.maxDeliveryAttempts,
    '--max-delivery-attempts',
    DEFAULT_MAX_DELIVERY_ATTEMPTS,
  );
  const eventTimeToLiveInMinutes = wholeNumber(
    options.eventTtl,
    '--event-ttl',
    DEFAULT_EVENT_TTL_MINUTES,
  );
  const templateDir = typeof options.out === 'string' ? options.out : DEFAULT_TEMPLATE_DIR;
  const deadLetter =
    typeof options.deadLetter === 'string' ? options.deadLetter : DEFAULT_DEAD_LETTER_CONTAINER;
  const auth = config.eventGrid?.auth;
  // Only read the stack when something needs its webhook: a removal, or no rule from Azure,
  // needs no AWS access at all.
  const needsWebhook = !remove && rulesNeedingEvents(config.rules).length > 0;
  const webhookUrl =
    webhookOption ?? (needsWebhook ? await stackWebhookUrl(stackName, awsEnv) : undefined);
  const setup: SetupAzureOptions = {
    rules: config.rules,
    stackName,
    accounts,
    defaultLocation: {
      ...(defaultSubscription !== undefined && { subscription: defaultSubscription }),
      ...(typeof options.resourceGroup === 'string' && { resourceGroup: options.resourceGroup }),
    },
    flatAccounts: flat,
    deadLetter,
    maxDeliveryAttempts,
    eventTimeToLiveInMinutes,
    templateDir,
    remove,
    ...(webhookUrl !== undefined && { webhookUrl }),
    ...(auth !== undefined && { auth }),
  };
  const plans = planSetupAzure(setup);
  const written: string[] = [];
  if (!dryRun && !remove && plans.length > 0) {
    await mkdir(templateDir, { recursive: true });
    for (const plan of plans) {
      await writeFile(
        join(templateDir, `${plan.account}.eventgrid.json`),
        `${JSON.stringify(plan.template, null, 2)}\n`,
      );
      written.push(plan.templateFile);
    }
  }
  if (options.json) {
    io.stdout.write(
      `${JSON.stringify({
        target: targetName,
        stack: stackName,
        dryRun,
        remove,
        ...(!remove && { webhookUrl, auth: auth?.mode }),
        written,
        accounts: plans,
      })}\n`,
    );
    return;
  }
  const retry = `${maxDeliveryAttempts} attempts within ${eventTimeToLiveInMinutes} min`;
  const deadLetterText = deadLetter.startsWith('/') ? deadLetter : `container ${deadLetter}`;
  const lines = plans.flatMap((plan) =>
    planText(plan, { remove, dryRun, webhookUrl, auth, retry, deadLetter: deadLetterText }),
  );
  if (plans.length === 0) {
    lines.push('no rule replicates changes made on Azure: no Event Grid subscription is needed');
  }
  if (dryRun) lines.push('(dry run: nothing written; --json prints the templates)');
  io.stdout.write(`${lines.join('\n')}\n`);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Adds `setup azure` to the `setup` command. */
export function registerSetupAzureCommand(setup: Command): void {
  setup
    .command('azure')
    .description(
      "write an ARM template per storage account with each rule's Event Grid subscriptions to the stack's webhook (event types, subject and own-writes filters, authentication, retries, dead letters) and print the az commands that deploy it",
    )
    .option('--stack <name>', 'the CloudFormation stack (default s3-azure-replicator-<stage>)')
    .option('--stage <stage>', 'the stage it was deployed with (default dev)')
    .option('--region <region>', "the stack's region (default AWS_REGION)")
    .option(
      '--local [port]',
      'a running `s3az local` (its configuration; needs --webhook-url, a tunnel to its webhook)',
    )
    .option('--config <file>', 'the replication configuration the stack was deployed with')
    .option(
      '--webhook-url <url>',
      "the webhook's HTTPS URL (default: the stack's HttpApiUrl output + /eventgrid)",
    )
    .option('--subscription <id>', "the storage accounts' Azure subscription id")
    .option('--resource-group <name>', "the storage accounts' resource group")
    .option(
      '--account <account=where>',
      'a storage account elsewhere: <account>=<resource group> or <account>=<its resource id> (repeatable)',
      collect,
      [],
    )
    .option(
      '--flat <accounts>',
      'storage accounts without hierarchical namespace (comma-separated, or "all"): no rename/directory subscription',
    )
    .option(
      '--dead-letter <container>',
      `container for undeliverable events, made in each account, or an existing container's resource id (default ${DEFAULT_DEAD_LETTER_CONTAINER})`,
    )
    .option(
      '--max-delivery-attempts <n>',
      `delivery attempts before dead-lettering, 1-30 (default ${DEFAULT_MAX_DELIVERY_ATTEMPTS})`,
    )
    .option(
      '--event-ttl <minutes>',
      `minutes an event is retried, 1-1440 (default ${DEFAULT_EVENT_TTL_MINUTES})`,
    )
    .option('--out <dir>', `where the templates are written (default ${DEFAULT_TEMPLATE_DIR})`)
    .option('--dry-run', 'print the subscriptions and commands; write nothing')
    .option('--remove', 'print the commands that delete exactly the subscriptions setup makes')
    .option('--json', 'machine-readable output, templates included')
    .action((options) => runSetupAzure(options));
}
