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
});
