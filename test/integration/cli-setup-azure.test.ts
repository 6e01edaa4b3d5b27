import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectOneLineError, s3azOffline } from '../support/cli.ts';
import { startCloudFormationStandIn } from '../support/cloudformation.ts';

const SUBSCRIPTION = '00000000-1111-2222-3333-444444444444';
const WEBHOOK = 'https://abc123.execute-api.eu-west-1.amazonaws.com/eventgrid';
const SECRET = 'correct-horse-battery-staple-7f3a';

const s3az = s3azOffline;

let dir: string;
let sharedConfig: string;
let localSecretConfig: string;
let entraConfig: string;
let cloudFormation: Awaited<ReturnType<typeof startCloudFormationStandIn>>;
let cloudFormationUrl: string;
/** The stack the fake CloudFormation knows, with an HttpApiUrl output, and one without. */
const STACKS: Record<string, Record<string, string>> = {
  's3-azure-replicator-prod': {
    HttpApiUrl: 'https://abc123.execute-api.eu-west-1.amazonaws.com',
    EventsQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/111122223333/events',
  },
  's3-azure-replicator-old': {
    EventsQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/111122223333/events',
  },
};

const rulesYaml = `rules:
  - name: landing
    s3: { bucket: landing-bucket, prefix: in/ }
    azure: { accountUrl: https://landingacct.blob.core.windows.net, container: landing, prefix: from-s3/ }
    deletes: mirror
  - name: lake
    s3: { bucket: lake-bucket }
    azure: { accountUrl: https://lakeacct.blob.core.windows.net, container: raw }
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 's3az-setup-azure-'));
  sharedConfig = join(dir, 'shared.yml');
  await writeFile(
    sharedConfig,
    `${rulesYaml}eventGrid:\n  auth:\n    mode: shared-secret\n    secretArn: arn:aws:secretsmanager:eu-west-1:111122223333:secret:webhook\n`,
  );
  localSecretConfig = join(dir, 'local-secret.yml');
  await writeFile(
    localSecretConfig,
    `${rulesYaml}eventGrid:\n  auth:\n    mode: shared-secret\n    secretEnv: S3AZ_TEST_WEBHOOK_SECRET\n`,
  );
  entraConfig = join(dir, 'entra.yml');
  await writeFile(
    entraConfig,
    `${rulesYaml}eventGrid:\n  auth:\n    mode: entra\n    tenantId: 72f988bf-0000-0000-0000-000000000000\n    audience: api://s3az-webhook\n`,
  );
  cloudFormation = await startCloudFormationStandIn(new Map(Object.entries(STACKS)));
  cloudFormationUrl = cloudFormation.url;
});

afterAll(async () => {
  await cloudFormation.close();
  await rm(dir, { recursive: true, force: true });
});

const location = ['--subscription', SUBSCRIPTION, '--resource-group', 'data-rg'];

describe('Command: s3az setup azure', () => {
  it('--help describes the command and its options', async () => {
    const run = await s3az(['setup', 'azure', '--help']);
    expect(run.code).toBe(0);
    for (const option of [
      '--webhook-url',
      '--subscription',
      '--resource-group',
      '--account',
      '--flat',
      '--dead-letter',
      '--max-delivery-attempts',
      '--event-ttl',
      '--out',
      '--dry-run',
      '--remove',
      '--json',
    ]) {
      expect(run.stdout).toContain(option);
    }
  });

  it("--dry-run --json prints each account's template and commands, and writes nothing", async () => {
    const out = join(dir, 'dry');
    const run = await s3az([
      'setup',
      'azure',
      '--stage',
      'prod',
      '--config',
      sharedConfig,
      '--webhook-url',
      WEBHOOK,
      ...location,
      '--account',
      'lakeacct=lake-rg',
      '--flat',
      'landingacct',
      '--out',
      out,
      '--dry-run',
      '--json',
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const output = JSON.parse(run.stdout);
    expect(output).toMatchObject({
      stack: 's3-azure-replicator-prod',
      dryRun: true,
      remove: false,
      webhookUrl: WEBHOOK,
      auth: 'shared-secret',
      written: [],
    });
    expect(
      output.accounts.map((each: { account: string; resourceGroup: string }) => [
        each.account,
        each.resourceGroup,
      ]),
    ).toEqual([
      ['landingacct', 'data-rg'],
      ['lakeacct', 'lake-rg'],
    ]);
    const names = output.accounts.flatMap((each: { eventSubscriptions: { name: string }[] }) =>
      each.eventSubscriptions.map((planned) => planned.name),
    );
    expect(names).toEqual([
      's3az-s3-azure-replicator-prod-landing',
      's3az-s3-azure-replicator-prod-landing-noid',
      's3az-s3-azure-replicator-prod-lake',
      's3az-s3-azure-replicator-prod-lake-noid',
      's3az-s3-azure-replicator-prod-lake-moves',
    ]);
    expect(output.accounts[0].template.resources[1].properties.filter).toMatchObject({
      subjectBeginsWith: '/blobServices/default/containers/landing/blobs/from-s3/',
      advancedFilters: [
        {
          operatorType: 'StringNotBeginsWith',
          key: 'data.clientRequestId',
          values: ['s3az-replicator-'],
        },
      ],
    });
    expect(output.accounts[1].commands[1]).toMatch(
      /^az deployment group create --mode Incremental --subscription 0{8}-1111-2222-3333-4{12} --resource-group lake-rg --name s3az-s3-azure-replicator-prod-lakeacct --template-file .*\/dry\/lakeacct\.eventgrid\.json --parameters webhookSecret="\$\(aws secretsmanager get-secret-value --region eu-west-1 --secret-id arn:aws:secretsmanager:eu-west-1:111122223333:secret:webhook --query SecretString --output text\)"$/,
    );
    await expect(stat(out)).rejects.toThrow();
  });

  it('writes the templates and prints the commands; the secret is in neither', async () => {
    const out = join(dir, 'written');
    const run = await s3az(
      [
        'setup',
        'azure',
        '--stage',
        'prod',
        '--config',
        localSecretConfig,
        '--webhook-url',
        WEBHOOK,
        ...location,
        '--out',
        out,
      ],
      { S3AZ_TEST_WEBHOOK_SECRET: SECRET },
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect((await readdir(out)).sort()).toEqual([
      'lakeacct.eventgrid.json',
      'landingacct.eventgrid.json',
    ]);
    const template = JSON.parse(await readFile(join(out, 'lakeacct.eventgrid.json'), 'utf8'));
    expect(template.parameters.webhookSecret.type).toBe('securestring');
    expect(
      template.resources[1].properties.destination.properties.deliveryAttributeMappings,
    ).toEqual([
      {
        name: 'x-s3az-secret',
        type: 'Static',
        properties: { value: "[parameters('webhookSecret')]", isSecret: true },
      },
    ]);
    for (const text of [
      run.stdout,
      await readFile(join(out, 'lakeacct.eventgrid.json'), 'utf8'),
      await readFile(join(out, 'landingacct.eventgrid.json'), 'utf8'),
    ]) {
      expect(text).not.toContain(SECRET);
    }
    expect(run.stdout).toContain(`wrote ${out}/lakeacct.eventgrid.json`);
    expect(run.stdout).toContain('--parameters webhookSecret="$S3AZ_TEST_WEBHOOK_SECRET"');
    expect(run.stdout).toContain(
      's3az-s3-azure-replicator-prod-lake-moves: BlobRenamed, DirectoryRenamed under /blobServices/default/containers/raw/',
    );
  });

  it("reads the webhook from the stack's HttpApiUrl output (Entra ID delivery)", async () => {
    const run = await s3az(
      [
        'setup',
        'azure',
        '--stage',
        'prod',
        '--config',
        entraConfig,
        ...location,
        '--dry-run',
        '--json',
      ],
      { AWS_ENDPOINT_URL_CLOUDFORMATION: cloudFormationUrl },
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const output = JSON.parse(run.stdout);
    expect(output.webhookUrl).toBe(WEBHOOK);
    expect(output.auth).toBe('entra');
    expect(
      output.accounts[0].template.resources[1].properties.destination.properties,
    ).toMatchObject({
      endpointUrl: WEBHOOK,
      azureActiveDirectoryTenantId: '72f988bf-0000-0000-0000-000000000000',
      azureActiveDirectoryApplicationIdOrUri: 'api://s3az-webhook',
    });
  });

  it('--remove prints the deletes without reading the stack', async () => {
    const run = await s3az([
      'setup',
      'azure',
      '--stage',
      'prod',
      '--config',
      sharedConfig,
      ...location,
      '--remove',
      '--json',
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const output = JSON.parse(run.stdout);
    expect(output.remove).toBe(true);
    expect(output.accounts[0].commands).toEqual(
      ['landing', 'landing-noid', 'landing-moves'].map(
        (name) =>
          `az eventgrid event-subscription delete --name s3az-s3-azure-replicator-prod-${name} --source-resource-id /subscriptions/${SUBSCRIPTION}/resourceGroups/data-rg/providers/Microsoft.Storage/storageAccounts/landingacct`,
      ),
    );
  });

  it.each([
    {
      case: 'no configuration',
      args: ['--webhook-url', WEBHOOK, ...location],
      error: /--config: the replication configuration/,
    },
    {
      case: 'no subscription',
      args: ['--config', 'SHARED', '--webhook-url', WEBHOOK],
      error:
        /storage account landingacct \(rule "landing"\): its Azure subscription and resource group are needed/,
    },
    {
      case: 'an http webhook',
      args: ['--config', 'SHARED', '--webhook-url', 'http://x.example/eventgrid', ...location],
      error: /only to https/,
    },
    {
      case: 'a bad number',
      args: ['--config', 'SHARED', '--webhook-url', WEBHOOK, ...location, '--event-ttl', 'a day'],
      error: /--event-ttl: "a day" is not a whole number/,
    },
    {
      case: 'a stack without HttpApiUrl',
      args: ['--stage', 'old', '--config', 'SHARED', ...location],
      error:
        /stack s3-azure-replicator-old \(eu-west-1\) has no output HttpApiUrl; give the webhook with --webhook-url/,
    },
    {
      case: 'a stack that does not exist',
      args: ['--stage', 'nope', '--config', 'SHARED', ...location],
      error: /stack s3-azure-replicator-nope \(eu-west-1\) does not exist/,
    },
    {
      case: '--local without a webhook URL',
      args: ['--local', '--config', 'SHARED', ...location],
      error: /--local: Event Grid on Azure cannot reach/,
    },
  ])('fails with one line and exit code 2: $case', async ({ args, error }) => {
    const run = await s3az(
      ['setup', 'azure', ...args.map((arg) => (arg === 'SHARED' ? sharedConfig : arg))],
      { AWS_ENDPOINT_URL_CLOUDFORMATION: cloudFormationUrl },
    );
    expectOneLineError(run, error);
  });
});
