import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import { OWN_CLIENT_REQUEST_ID_PREFIX } from '../../src/core/metadata.ts';
import { UsageError } from '../../src/errors.ts';
import {
  type AccountPlan,
  armLiteral,
  deploymentName,
  eventSubscriptionName,
  type Json,
  type PlannedSubscription,
  parseAccountMapping,
  planSetupAzure,
  type SetupAzureOptions,
  shellQuote,
  type WebhookAuth,
} from '../../src/ops/setup-azure.ts';

const SUBSCRIPTION = '00000000-1111-2222-3333-444444444444';
const WEBHOOK = 'https://abc123.execute-api.eu-west-1.amazonaws.com/eventgrid';
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:webhook';
const SHARED: WebhookAuth = { mode: 'shared-secret', secretArn: SECRET_ARN };
const ENTRA: WebhookAuth = {
  mode: 'entra',
  tenantId: '72f988bf-0000-0000-0000-000000000000',
  audience: 'api://s3az-webhook',
};

const { rules } = validateConfig({
  rules: [
    {
      // A flat (Blob Storage) account, deletes mirrored, prefixes on both sides.
      name: 'landing',
      s3: { bucket: 'landing-bucket', prefix: 'in/' },
      azure: {
        accountUrl: 'https://LandingAcct.blob.core.windows.net',
        container: 'landing',
        prefix: 'from-s3/',
      },
      deletes: 'mirror',
    },
    {
      // An ADLS Gen2 account (its dfs endpoint names the same account), whole container.
      name: 'lake',
      s3: { bucket: 'lake-bucket' },
      azure: { accountUrl: 'https://lakeacct.dfs.core.windows.net', container: 'raw' },
    },
    {
      // Changes flow only from S3: no Event Grid subscription.
      name: 'exports',
      direction: 's3-to-azure',
      s3: { bucket: 'exports-bucket' },
      azure: { accountUrl: 'https://landingacct.blob.core.windows.net', container: 'exports' },
    },
  ],
});

const base: SetupAzureOptions = {
  rules,
  stackName: 's3-azure-replicator-prod',
  webhookUrl: WEBHOOK,
  auth: SHARED,
  defaultLocation: { subscription: SUBSCRIPTION, resourceGroup: 'data-rg' },
  accounts: new Map([['lakeacct', { subscription: SUBSCRIPTION, resourceGroup: 'lake-rg' }]]),
  flatAccounts: new Set(['landingacct']),
  templateDir: 'out',
};

function plan(overrides: Partial<SetupAzureOptions> = {}): AccountPlan[] {
  return planSetupAzure({ ...base, ...overrides });
}

function account(plans: AccountPlan[], name: string): AccountPlan {
  const found = plans.find((each) => each.account === name);
  if (!found) throw new Error(`no plan for ${name}`);
  return found;
}

type Resource = { [key: string]: Json };
const subscriptionsOf = (accountPlan: AccountPlan): Resource[] =>
  (accountPlan.template?.resources ?? []).filter(
    (resource) => resource.type === 'Microsoft.EventGrid/eventSubscriptions',
  );
const propertiesOf = (resource: Resource | undefined) =>
  (resource?.properties ?? {}) as {
    destination: { endpointType: string; properties: { [key: string]: Json } };
    filter: { [key: string]: Json };
    retryPolicy: { [key: string]: Json };
    deadLetterDestination: { endpointType: string; properties: { [key: string]: Json } };
    labels: string[];
  };

/**
 * Event Grid's documented advanced-filter semantics for the two operators setup uses: a
 * missing key does not match StringNotBeginsWith; IsNullOrUndefined matches a missing or null
 * key; string comparisons ignore case.
 * https://learn.microsoft.com/azure/event-grid/event-filtering
 */
function delivered(planned: PlannedSubscription, data: Record<string, unknown>): boolean {
  return planned.advancedFilters.every((filter) => {
    const value = data[filter.key.replace(/^data\./, '')];
    if (filter.operatorType === 'IsNullOrUndefined') return value === undefined || value === null;
    if (filter.operatorType === 'StringNotBeginsWith') {
      return (
        typeof value === 'string' &&
        !(filter.values ?? []).some((prefix) =>
          value.toLowerCase().startsWith(prefix.toLowerCase()),
        )
      );
    }
    throw new Error(`unexpected operator ${filter.operatorType}`);
  });
}

describe('Function: planSetupAzure', () => {
  it('groups the rules that replicate from Azure by storage account, one template and deployment each', () => {
    const plans = plan();
    expect(plans.map((each) => each.account)).toEqual(['landingacct', 'lakeacct']);
    expect(account(plans, 'landingacct')).toMatchObject({
      subscription: SUBSCRIPTION,
      resourceGroup: 'data-rg',
      storageAccountId: `/subscriptions/${SUBSCRIPTION}/resourceGroups/data-rg/providers/Microsoft.Storage/storageAccounts/landingacct`,
      deploymentName: 's3az-s3-azure-replicator-prod-landingacct',
      templateFile: 'out/landingacct.eventgrid.json',
      hierarchicalNamespace: false,
    });
    expect(account(plans, 'lakeacct')).toMatchObject({
      resourceGroup: 'lake-rg',
      hierarchicalNamespace: true,
    });
    // The s3-to-azure rule on landingacct gets nothing.
    expect(
      plans.flatMap((each) => each.eventSubscriptions).some((each) => each.rule === 'exports'),
    ).toBe(false);
  });

  it.each([
    {
      case: 'flat account, deletes mirrored, with a prefix',
      name: 'landingacct',
      expected: [
        {
          name: 's3az-s3-azure-replicator-prod-landing',
          purpose: 'changes',
          includedEventTypes: ['Microsoft.Storage.BlobCreated', 'Microsoft.Storage.BlobDeleted'],
          subjectBeginsWith: '/blobServices/default/containers/landing/blobs/from-s3/',
        },
        {
          name: 's3az-s3-azure-replicator-prod-landing-noid',
          purpose: 'changes-without-client-request-id',
          includedEventTypes: ['Microsoft.Storage.BlobCreated', 'Microsoft.Storage.BlobDeleted'],
          subjectBeginsWith: '/blobServices/default/containers/landing/blobs/from-s3/',
        },
      ],
    },
    {
      case: 'ADLS Gen2 account, deletes ignored, whole container',
      name: 'lakeacct',
      expected: [
        {
          name: 's3az-s3-azure-replicator-prod-lake',
          purpose: 'changes',
          includedEventTypes: ['Microsoft.Storage.BlobCreated'],
          subjectBeginsWith: '/blobServices/default/containers/raw/blobs/',
        },
        {
          name: 's3az-s3-azure-replicator-prod-lake-noid',
          purpose: 'changes-without-client-request-id',
          includedEventTypes: ['Microsoft.Storage.BlobCreated'],
          subjectBeginsWith: '/blobServices/default/containers/raw/blobs/',
        },
        {
          // Renames carry the new name as subject: the container only, no own-writes filter.
          name: 's3az-s3-azure-replicator-prod-lake-moves',
          purpose: 'moves',
          includedEventTypes: [
            'Microsoft.Storage.BlobRenamed',
            'Microsoft.Storage.DirectoryRenamed',
          ],
          subjectBeginsWith: '/blobServices/default/containers/raw/',
          advancedFilters: [],
        },
      ],
    },
  ])('subscribes a rule ($case): event types and subject filters', ({ name, expected }) => {
    const accountPlan = account(plan(), name);
    expect(accountPlan.eventSubscriptions).toMatchObject(expected);
    const resources = subscriptionsOf(accountPlan);
    expect(resources.map((resource) => resource.name)).toEqual(expected.map((each) => each.name));
    resources.forEach((resource, index) => {
      const { filter } = propertiesOf(resource);
      expect(filter.includedEventTypes).toEqual(expected[index]?.includedEventTypes);
      expect(filter.subjectBeginsWith).toBe(expected[index]?.subjectBeginsWith);
      expect(filter.isSubjectCaseSensitive).toBe(true);
      expect(resource.scope).toBe(`Microsoft.Storage/storageAccounts/${name}`);
      expect(resource.apiVersion).toBe('2025-02-15');
    });
  });

  it('adds DirectoryDeleted to an ADLS Gen2 rule that mirrors deletes', () => {
    const [accountPlan] = plan({ flatAccounts: new Set() });
    const moves = accountPlan?.eventSubscriptions.find(
      (each) => each.rule === 'landing' && each.purpose === 'moves',
    );
    expect(moves?.includedEventTypes).toEqual([
      'Microsoft.Storage.BlobRenamed',
      'Microsoft.Storage.DirectoryRenamed',
      'Microsoft.Storage.DirectoryDeleted',
    ]);
    expect(moves?.subjectBeginsWith).toBe('/blobServices/default/containers/landing/');
  });

  it('leaves the rename subscription out for every account with flatAccounts: true', () => {
    const purposes = plan({ flatAccounts: true }).flatMap((each) =>
      each.eventSubscriptions.map((planned) => planned.purpose),
    );
    expect(purposes).not.toContain('moves');
  });

  it.each([
    { case: "a user's write", data: { clientRequestId: 'a1b2-user' }, changes: true, noid: false },
    {
      case: "the replicator's own write",
      data: { clientRequestId: `${OWN_CLIENT_REQUEST_ID_PREFIX}0b6c` },
      changes: false,
      noid: false,
    },
    {
      case: 'the same, upper case (filters ignore case)',
      data: { clientRequestId: 'S3AZ-REPLICATOR-0B6C' },
      changes: false,
      noid: false,
    },
    {
      case: 'an SFTP commit (no clientRequestId)',
      data: { api: 'SftpCommit' },
      changes: false,
      noid: true,
    },
    { case: 'a null clientRequestId', data: { clientRequestId: null }, changes: false, noid: true },
  ])(
    "keeps the replicator's own writes out and delivers every other change exactly once: $case",
    ({ data, changes, noid }) => {
      const planned = account(plan(), 'landingacct').eventSubscriptions;
      const [main, withoutId] = planned;
      expect(main?.advancedFilters).toEqual([
        {
          operatorType: 'StringNotBeginsWith',
          key: 'data.clientRequestId',
          values: ['s3az-replicator-'],
        },
      ]);
      expect(withoutId?.advancedFilters).toEqual([
        { operatorType: 'IsNullOrUndefined', key: 'data.clientRequestId' },
      ]);
      expect(delivered(main as PlannedSubscription, data)).toBe(changes);
      expect(delivered(withoutId as PlannedSubscription, data)).toBe(noid);
    },
  );

  it('delivers to the webhook with a secret header from a secure parameter (shared secret)', () => {
    const accountPlan = account(plan(), 'lakeacct');
    const { destination } = propertiesOf(subscriptionsOf(accountPlan)[0]);
    expect(destination).toEqual({
      endpointType: 'WebHook',
      properties: {
        endpointUrl: WEBHOOK,
        maxEventsPerBatch: 10,
        preferredBatchSizeInKilobytes: 64,
        minimumTlsVersionAllowed: '1.2',
        deliveryAttributeMappings: [
          {
            name: 'x-s3az-secret',
            type: 'Static',
            properties: { value: "[parameters('webhookSecret')]", isSecret: true },
          },
        ],
      },
    });
    expect(accountPlan.template?.parameters).toEqual({
      webhookSecret: {
        type: 'securestring',
        metadata: { description: "the webhook's shared secret, sent as the x-s3az-secret header" },
      },
    });
    // The shell reads the secret when the command runs; the command as printed holds none.
    expect(accountPlan.commands).toEqual([
      `az deployment group what-if --subscription ${SUBSCRIPTION} --resource-group lake-rg --name s3az-s3-azure-replicator-prod-lakeacct --template-file out/lakeacct.eventgrid.json --parameters webhookSecret="$(aws secretsmanager get-secret-value --region eu-west-1 --secret-id ${SECRET_ARN} --query SecretString --output text)"`,
      `az deployment group create --mode Incremental --subscription ${SUBSCRIPTION} --resource-group lake-rg --name s3az-s3-azure-replicator-prod-lakeacct --template-file out/lakeacct.eventgrid.json --parameters webhookSecret="$(aws secretsmanager get-secret-value --region eu-west-1 --secret-id ${SECRET_ARN} --query SecretString --output text)"`,
    ]);
  });

  it('fills a local secret from its environment variable, never its value', () => {
    const [accountPlan] = plan({
      auth: { mode: 'shared-secret', secretEnv: 'S3AZ_WEBHOOK_SECRET' },
      rules: rules.slice(1, 2),
      flatAccounts: new Set(),
    });
    expect(accountPlan?.commands[1]).toContain('--parameters webhookSecret="$S3AZ_WEBHOOK_SECRET"');
  });

  it('delivers with an Entra ID token for the webhook application (entra), with no secret parameter', () => {
    const accountPlan = account(plan({ auth: ENTRA }), 'lakeacct');
    const { destination } = propertiesOf(subscriptionsOf(accountPlan)[0]);
    expect(destination.properties).toEqual({
      endpointUrl: WEBHOOK,
      maxEventsPerBatch: 10,
      preferredBatchSizeInKilobytes: 64,
      minimumTlsVersionAllowed: '1.2',
      azureActiveDirectoryTenantId: '72f988bf-0000-0000-0000-000000000000',
      azureActiveDirectoryApplicationIdOrUri: 'api://s3az-webhook',
    });
    expect(accountPlan.template?.parameters).toEqual({});
    expect(accountPlan.commands.join('\n')).not.toContain('--parameters');
    expect(JSON.stringify(accountPlan.template)).not.toContain('deliveryWithResourceIdentity');
  });

  it('sets the retry policy and dead-letters to a container it makes in the account', () => {
    const accountPlan = account(
      plan({ maxDeliveryAttempts: 12, eventTimeToLiveInMinutes: 720 }),
      'lakeacct',
    );
    const [container, ...rest] = accountPlan.template?.resources ?? [];
    expect(container).toEqual({
      type: 'Microsoft.Storage/storageAccounts/blobServices/containers',
      apiVersion: '2023-05-01',
      name: 'lakeacct/default/s3az-dead-letters',
      properties: { publicAccess: 'None' },
    });
    for (const resource of rest) {
      const properties = propertiesOf(resource);
      expect(properties.retryPolicy).toEqual({
        maxDeliveryAttempts: 12,
        eventTimeToLiveInMinutes: 720,
      });
      expect(properties.deadLetterDestination).toEqual({
        endpointType: 'StorageBlob',
        properties: {
          resourceId: accountPlan.storageAccountId,
          blobContainerName: 's3az-dead-letters',
        },
      });
      expect(resource.dependsOn).toEqual([
        "[resourceId('Microsoft.Storage/storageAccounts/blobServices/containers', 'lakeacct', 'default', 's3az-dead-letters')]",
      ]);
      expect(properties.labels).toEqual(['s3az', 'stack:s3-azure-replicator-prod', 'rule:lake']);
      expect(resource.properties).toMatchObject({ eventDeliverySchema: 'EventGridSchema' });
    }
  });

  it('dead-letters to an existing container elsewhere without making it', () => {
    const other = `/subscriptions/${SUBSCRIPTION}/resourceGroups/ops-rg/providers/Microsoft.Storage/storageAccounts/opsacct`;
    const accountPlan = account(
      plan({ deadLetter: `${other}/blobServices/default/containers/eventgrid-dlq` }),
      'lakeacct',
    );
    const resources = accountPlan.template?.resources ?? [];
    expect(
      resources.every((resource) => resource.type === 'Microsoft.EventGrid/eventSubscriptions'),
    ).toBe(true);
    expect(resources.every((resource) => resource.dependsOn === undefined)).toBe(true);
    expect(propertiesOf(resources[0]).deadLetterDestination.properties).toEqual({
      resourceId: other,
      blobContainerName: 'eventgrid-dlq',
    });
  });

  it('with remove, prints the deletes of exactly the subscriptions setup makes (the rename one too), without a webhook', () => {
    const plans = planSetupAzure({
      rules,
      stackName: 's3-azure-replicator-prod',
      defaultLocation: { subscription: SUBSCRIPTION, resourceGroup: 'data-rg' },
      flatAccounts: true,
      remove: true,
    });
    const landing = account(plans, 'landingacct');
    expect(landing.template).toBeUndefined();
    expect(landing.commands).toEqual(
      ['landing', 'landing-noid', 'landing-moves'].map(
        (name) =>
          `az eventgrid event-subscription delete --name s3az-s3-azure-replicator-prod-${name} --source-resource-id ${landing.storageAccountId}`,
      ),
    );
    const created = plan({ flatAccounts: new Set() }).flatMap((each) =>
      each.eventSubscriptions.map((planned) => planned.name),
    );
    expect(plans.flatMap((each) => each.eventSubscriptions.map((planned) => planned.name))).toEqual(
      created,
    );
  });

  it('plans nothing, and needs no webhook, when no rule replicates from Azure', () => {
    expect(planSetupAzure({ rules: rules.slice(2), stackName: 'prod' })).toEqual([]);
  });

  it('is the same on every run, so a re-run updates rather than duplicates', () => {
    expect(JSON.stringify(plan())).toBe(JSON.stringify(plan()));
  });

  it.each([
    {
      case: 'an emulator account',
      overrides: {
        rules: validateConfig({
          rules: [
            {
              name: 'local',
              s3: { bucket: 'b-local' },
              azure: {
                accountUrl: 'http://127.0.0.1:10000/devstoreaccount1',
                container: 'c-local',
              },
            },
          ],
        }).rules,
      },
      error: /rule "local": .* is an emulator/,
    },
    {
      case: 'no subscription and resource group',
      overrides: { defaultLocation: {} },
      error:
        /storage account landingacct \(rule "landing"\): its Azure subscription and resource group are needed/,
    },
    {
      case: 'a subscription name instead of its id',
      overrides: { defaultLocation: { subscription: 'Production', resourceGroup: 'data-rg' } },
      error: /"Production" is not a subscription id/,
    },
    {
      case: 'an http webhook',
      overrides: { webhookUrl: 'http://x.example/eventgrid' },
      error: /only to https/,
    },
    {
      case: 'a secret in the webhook URL',
      overrides: { webhookUrl: `${WEBHOOK}?code=hunter2` },
      error: /leave the secret out of the URL/,
    },
    {
      case: 'no eventGrid.auth',
      overrides: { auth: undefined },
      error: /eventGrid.auth is not configured/,
    },
    {
      case: 'auth mode none',
      overrides: { auth: { mode: 'none', allowUnauthenticated: true } as const },
      error: /mode none is for the local mirror only/,
    },
    {
      case: 'dead letters into a replicated container',
      overrides: { deadLetter: 'raw' },
      error: /rule "lake" replicates container raw of lakeacct/,
    },
    {
      case: '--flat naming an account no rule uses',
      overrides: { flatAccounts: new Set(['landingacc']) },
      error:
        /--flat: no rule that replicates from Azure uses storage account landingacc \(they use landingacct, lakeacct\)/,
    },
    {
      case: '--account naming an account no rule uses',
      overrides: {
        accounts: new Map([['exportsacct', { subscription: SUBSCRIPTION, resourceGroup: 'rg' }]]),
      },
      error: /--account: no rule that replicates from Azure uses storage account exportsacct/,
    },
    {
      case: 'a bad container name',
      overrides: { deadLetter: 'Dead_Letters' },
      error: /not a valid container name/,
    },
    {
      case: 'too many attempts',
      overrides: { maxDeliveryAttempts: 31 },
      error: /--max-delivery-attempts: 31/,
    },
    {
      case: 'a TTL over a day',
      overrides: { eventTimeToLiveInMinutes: 1441 },
      error: /--event-ttl: 1441/,
    },
    {
      case: 'two rules with the same subscription name',
      overrides: {
        rules: validateConfig({
          rules: ['a', 'a-noid'].map((name) => ({
            name,
            s3: { bucket: `b-${name}` },
            azure: { accountUrl: 'https://acct.blob.core.windows.net', container: `c-${name}` },
          })),
        }).rules,
        accounts: new Map(),
        flatAccounts: new Set(),
      },
      error:
        /rules "a" and "a-noid" give the same event subscription name s3az-s3-azure-replicator-prod-a-noid/,
    },
  ] as { case: string; overrides: Partial<SetupAzureOptions>; error: RegExp }[])(
    'refuses $case with a UsageError',
    ({ overrides, error }) => {
      expect(() => plan(overrides)).toThrow(UsageError);
      expect(() => plan(overrides)).toThrow(error);
    },
  );
});

describe('Function: eventSubscriptionName', () => {
  const valid = /^[A-Za-z0-9-]{3,64}$/;

  it.each([
    {
      stack: 's3-azure-replicator-prod',
      rule: 'landing',
      purpose: 'changes',
      name: 's3az-s3-azure-replicator-prod-landing',
    },
    {
      stack: 's3-azure-replicator-prod',
      rule: 'landing',
      purpose: 'moves',
      name: 's3az-s3-azure-replicator-prod-landing-moves',
    },
    {
      stack: 'local',
      rule: 'data',
      purpose: 'changes-without-client-request-id',
      name: 's3az-local-data-noid',
    },
  ] as const)(
    'names $rule ($purpose) readably when it can: $name',
    ({ stack, rule, purpose, name }) => {
      expect(eventSubscriptionName(stack, rule, purpose)).toBe(name);
    },
  );

  it('keeps names within 64 characters of a-z, A-Z, 0-9 and "-", distinct and with their suffix', () => {
    const long = `r${'x'.repeat(62)}`;
    const names = [
      eventSubscriptionName('s3-azure-replicator-production-eu-west-1', long, 'changes'),
      eventSubscriptionName(
        's3-azure-replicator-production-eu-west-1',
        long,
        'changes-without-client-request-id',
      ),
      eventSubscriptionName('s3-azure-replicator-production-eu-west-1', long, 'moves'),
      eventSubscriptionName('prod', 'my.rule', 'changes'),
      eventSubscriptionName('prod', 'my_rule', 'changes'),
    ];
    for (const name of names) expect(name).toMatch(valid);
    expect(new Set(names).size).toBe(names.length);
    expect(names[1]).toMatch(/-noid$/);
    expect(names[2]).toMatch(/-moves$/);
    expect(names[3]).toMatch(/^s3az-prod-my-rule-[0-9a-f]{8}$/);
  });

  it('names a deployment within 64 characters', () => {
    expect(deploymentName('s3-azure-replicator-prod', 'lakeacct')).toBe(
      's3az-s3-azure-replicator-prod-lakeacct',
    );
    expect(deploymentName('x'.repeat(128), 'lakeacct').length).toBeLessThanOrEqual(64);
  });
});

describe('Function: parseAccountMapping', () => {
  it.each([
    {
      text: 'LakeAcct=lake-rg',
      sub: SUBSCRIPTION,
      expected: ['lakeacct', { resourceGroup: 'lake-rg', subscription: SUBSCRIPTION }],
    },
    {
      text: 'lakeacct=lake-rg',
      sub: undefined,
      expected: ['lakeacct', { resourceGroup: 'lake-rg' }],
    },
    {
      text: `lakeacct=/subscriptions/${SUBSCRIPTION}/resourceGroups/other-rg/providers/Microsoft.Storage/storageAccounts/lakeacct`,
      sub: undefined,
      expected: ['lakeacct', { subscription: SUBSCRIPTION, resourceGroup: 'other-rg' }],
    },
  ])('reads $text', ({ text, sub, expected }) => {
    expect(parseAccountMapping(text, sub)).toEqual(expected);
  });

  it.each([
    'lakeacct',
    '=rg',
    `lakeacct=/subscriptions/${SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/otheracct`,
  ])('refuses %s', (text) => {
    expect(() => parseAccountMapping(text)).toThrow(UsageError);
  });
});

describe('Function: shellQuote and armLiteral', () => {
  it.each([
    ['plain-word_1.json', 'plain-word_1.json'],
    ['with space', "'with space'"],
    ["it's", "'it'\\''s'"],
  ])('quotes %s as %s', (word, quoted) => {
    expect(shellQuote(word)).toBe(quoted);
  });

  it('escapes a literal that ARM would take for an expression', () => {
    expect(armLiteral('[not an expression]')).toBe('[[not an expression]');
    expect(armLiteral('/blobServices/default/containers/c/blobs/[x]')).toBe(
      '/blobServices/default/containers/c/blobs/[x]',
    );
  });
});
