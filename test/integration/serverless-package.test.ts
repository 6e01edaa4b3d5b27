import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  COPY_TIMEOUT_SECONDS,
  MAX_RECEIVES,
  TASKS_VISIBILITY_TIMEOUT_SECONDS,
} from '../../src/queue/timing.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const serverless = join(root, 'node_modules', '.bin', 'serverless');

type Resource = { Type: string; Properties: Record<string, unknown> };

async function packageWith(config: string) {
  const out = await mkdtemp(join(tmpdir(), 's3az-package-'));
  const result = await promisify(execFile)(
    serverless,
    ['package', '--stage', 'test', `--param=config=${config}`, '--package', out],
    { cwd: root, env: { ...process.env, SLS_TELEMETRY_DISABLED: '1' } },
  ).catch((error: { stdout?: string; stderr?: string }) => ({
    failed: true,
    stdout: error.stdout ?? '',
    stderr: error.stderr ?? '',
  }));
  return { out, result };
}

function statementsOf(resources: Record<string, Resource>): unknown[] {
  const policies = resources.IamRoleLambdaExecution?.Properties.Policies as
    | { PolicyDocument: { Statement: unknown[] } }[]
    | undefined;
  return policies?.flatMap((policy) => policy.PolicyDocument.Statement) ?? [];
}

async function configFile(yaml: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 's3az-config-'));
  const config = join(dir, 'replication.yml');
  await writeFile(config, yaml);
  return config;
}

describe('File: serverless.yml', () => {
  it('packages the functions, queues, redrive policies and a policy scoped to the rules', async () => {
    const { out, result } = await packageWith('test/fixtures/deploy.replication.yml');
    expect('failed' in result ? result.stderr : '').toBe('');
    const template = JSON.parse(
      await readFile(join(out, 'cloudformation-template-update-stack.json'), 'utf8'),
    ) as { Resources: Record<string, Resource> };
    const resources = template.Resources;

    const copy = resources.CopyLambdaFunction?.Properties ?? {};
    expect(copy.Runtime).toBe('nodejs22.x');
    expect(copy.Handler).toBe('dist/handlers/copy.handler');
    expect(copy.Timeout).toBe(COPY_TIMEOUT_SECONDS);
    expect(resources.TasksQueue?.Properties).toMatchObject({
      VisibilityTimeout: TASKS_VISIBILITY_TIMEOUT_SECONDS,
      RedrivePolicy: { maxReceiveCount: MAX_RECEIVES },
      SqsManagedSseEnabled: true,
    });
    expect(resources.EventsQueue?.Properties).toMatchObject({
      RedrivePolicy: { maxReceiveCount: MAX_RECEIVES },
      // An Event Grid event is up to 1 MB, stored one per message, dead letters alike.
      MaximumMessageSize: 1048576,
    });
    expect(resources.EventsDeadLetterQueue?.Properties).toMatchObject({
      MaximumMessageSize: 1048576,
    });
    const mappings = Object.values(resources).filter(
      (resource) => resource.Type === 'AWS::Lambda::EventSourceMapping',
    );
    expect(mappings).toHaveLength(2);
    for (const mapping of mappings) {
      expect(mapping.Properties.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
    }
    const routes = Object.values(resources)
      .filter((resource) => resource.Type === 'AWS::ApiGatewayV2::Route')
      .map((resource) => resource.Properties.RouteKey);
    expect(routes.sort()).toEqual(['OPTIONS /eventgrid', 'POST /eventgrid']);

    const policy = JSON.stringify(resources.IamRoleLambdaExecution?.Properties);
    expect(policy).toContain('arn:aws:s3:::my-data-bucket/incoming/*');
    expect(policy).not.toContain('arn:aws:s3:::*');
    expect(policy).toContain('arn:aws:secretsmanager:us-east-1:123456789012:secret:azure-key');
    expect(JSON.stringify(resources.EventsQueuePolicy?.Properties)).toContain(
      'arn:aws:s3:::my-data-bucket',
    );
    // Confused-deputy protection: the bucket's owner, this stack's account, resolved by
    // CloudFormation (no AWS credentials are needed to package).
    expect(resources.EventsQueuePolicy?.Properties).toHaveProperty(
      ['PolicyDocument', 'Statement', 0, 'Condition'],
      {
        ArnLike: { 'aws:SourceArn': ['arn:aws:s3:::my-data-bucket'] },
        StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
      },
    );
    // HeadObject of a missing key answers 404 only with s3:ListBucket on the bucket, which
    // it asks for with no s3:prefix.
    const listBucket = statementsOf(resources).filter(
      (statement) =>
        JSON.stringify((statement as { Action: unknown }).Action) === '["s3:ListBucket"]',
    );
    expect(listBucket).toEqual([
      expect.objectContaining({
        Effect: 'Allow',
        Condition: { StringLikeIfExists: { 's3:prefix': ['', 'incoming/*'] } },
      }),
    ]);
    expect(JSON.stringify(listBucket)).toContain('"arn:aws:s3:::my-data-bucket"');
    const environment = JSON.stringify(copy.Environment);
    expect(environment).toContain('S3AZ_TASKS_DLQ_URL');
    expect(environment).not.toMatch(/AccountKey|SharedAccessSignature/);
    // The plan step tells the stack's own S3 writes by their principal: its role's id, and its
    // own session name for a rule's roleArn.
    expect(copy.Environment).toHaveProperty(
      ['Variables', 'S3AZ_ROLE_SESSION_NAME'],
      's3-azure-replicator-test',
    );
    expect(copy.Environment).toHaveProperty(['Variables', 'S3AZ_OWN_S3_PRINCIPALS'], {
      'Fn::Join': [
        '',
        [
          'AWS:',
          { 'Fn::GetAtt': ['IamRoleLambdaExecution', 'RoleId'] },
          ':,*:s3-azure-replicator-test',
        ],
      ],
    });
  });

  it('refuses to package a configuration that does not validate, naming the rule and field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 's3az-bad-'));
    const config = join(dir, 'replication.yml');
    await writeFile(
      config,
      'rules:\n  - name: data\n    s3: { bucket: b-1 }\n    azure: { accountUrl: https://a.blob.core.windows.net, container: c }\n    direction: sideways\n',
    );
    const { result } = await packageWith(config);
    expect('failed' in result).toBe(true);
    expect(`${result.stdout}${result.stderr}`).toMatch(/data[\s\S]*direction/);
  });

  it('refuses to package eventGrid.auth mode none, which is for local use only, naming the field', async () => {
    const config = await configFile(
      'rules:\n  - name: data\n    s3: { bucket: b-1 }\n    azure: { accountUrl: https://a.blob.core.windows.net, container: data }\neventGrid:\n  auth: { mode: none, allowUnauthenticated: true }\n',
    );
    const { result } = await packageWith(config);
    expect('failed' in result).toBe(true);
    expect(`${result.stdout}${result.stderr}`).toMatch(
      /eventGrid\.auth\.mode[\s\S]*local use only/,
    );
  });

  it("packages KMS grants for a key alias, and the owner of another account's bucket", async () => {
    const config = await configFile(
      [
        'rules:',
        '  - name: data',
        '    s3: { bucket: b-1, kmsKeyId: alias/replicas, bucketOwner: "444455556666" }',
        '    azure: { accountUrl: https://a.blob.core.windows.net, container: data }',
        '',
      ].join('\n'),
    );
    const { out, result } = await packageWith(config);
    expect('failed' in result ? result.stderr : '').toBe('');
    const template = JSON.parse(
      await readFile(join(out, 'cloudformation-template-update-stack.json'), 'utf8'),
    ) as { Resources: Record<string, Resource> };
    const resources = template.Resources;
    // A policy cannot name a key by its alias; the key is matched by the alias it carries.
    expect(statementsOf(resources)).toContainEqual({
      Effect: 'Allow',
      Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
      Resource: [
        {
          'Fn::Join': [
            '',
            [
              'arn:',
              { Ref: 'AWS::Partition' },
              ':kms:',
              { Ref: 'AWS::Region' },
              ':',
              { Ref: 'AWS::AccountId' },
              ':key/*',
            ],
          ],
        },
      ],
      Condition: { 'ForAnyValue:StringEquals': { 'kms:ResourceAliases': ['alias/replicas'] } },
    });
    expect(resources.EventsQueuePolicy?.Properties).toHaveProperty(
      ['PolicyDocument', 'Statement', 0, 'Condition', 'StringEquals'],
      { 'aws:SourceAccount': '444455556666' },
    );
  });
});
