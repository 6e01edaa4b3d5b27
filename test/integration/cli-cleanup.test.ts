import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
} from '@aws-sdk/client-s3';
import { CreateQueueCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectOneLineError, s3azOffline } from '../support/cli.ts';
import { startCloudFormationStandIn } from '../support/cloudformation.ts';
import {
  emulatorEnv,
  emulatorVariables,
  makeBlobServiceClient,
  makeS3Client,
  makeSqsClient,
  uniqueName,
} from '../support/emulators.ts';

const s3az = s3azOffline;

const stacks = new Map<string, Record<string, string>>();
let standIn: Awaited<ReturnType<typeof startCloudFormationStandIn>>;
let dir: string;
let configPath: string;
let bucket: string;
let container: string;

/** The environment of an operator pointed at the emulators and the stand-in stack. */
const stackEnv = () => ({
  ...emulatorVariables(),
  AWS_ENDPOINT_URL_SQS: emulatorEnv().s3Endpoint,
  AWS_ENDPOINT_URL_CLOUDFORMATION: standIn.url,
});

beforeAll(async () => {
  standIn = await startCloudFormationStandIn(stacks);
  const sqs = makeSqsClient();
  const queue = async (name: string) =>
    (await sqs.send(new CreateQueueCommand({ QueueName: uniqueName(name) }))).QueueUrl ?? '';
  stacks.set('s3-azure-replicator-cleanup', {
    EventsQueueUrl: await queue('events'),
    EventsDeadLetterQueueUrl: await queue('events-dlq'),
    TasksQueueUrl: await queue('tasks'),
    TasksDeadLetterQueueUrl: await queue('tasks-dlq'),
  });
  bucket = uniqueName('clicleanup');
  container = uniqueName('clicleanup');
  await makeS3Client().send(new CreateBucketCommand({ Bucket: bucket }));
  await makeBlobServiceClient().getContainerClient(container).create();
  dir = await mkdtemp(join(tmpdir(), 's3az-cleanup-'));
  configPath = join(dir, 'replication.yml');
  await writeFile(
    configPath,
    `rules:\n  - name: data\n    s3: { bucket: ${bucket} }\n    azure: { accountUrl: "${emulatorEnv().azureAccountUrl}", container: ${container} }\n`,
  );
});

afterAll(async () => {
  await standIn.close();
  await rm(dir, { recursive: true, force: true });
});

describe('CLI: s3az cleanup', () => {
  it('--help names the options', async () => {
    const run = await s3az(['cleanup', '--help']);
    expect(run.code).toBe(0);
    for (const option of [
      '--stack',
      '--stage',
      '--region',
      '--local',
      '--config',
      '--rule',
      '--older-than',
      '--dry-run',
      '--json',
    ]) {
      expect(run.stdout).toContain(option);
    }
  });

  it('refuses a bad duration, a missing mirror, a missing config and an unknown rule in one line', async () => {
    expectOneLineError(
      await s3az(['cleanup', '--local', '1', '--older-than', 'soon']),
      /--older-than: "soon" is not a duration/,
    );
    expectOneLineError(await s3az(['cleanup', '--local', '1']), /no local mirror runs on port 1/);
    expectOneLineError(
      await s3az(['cleanup', '--stage', 'cleanup'], stackEnv()),
      /--config <file> is needed/,
    );
    expectOneLineError(
      await s3az(
        ['cleanup', '--stage', 'cleanup', '--config', configPath, '--rule', 'nope'],
        stackEnv(),
      ),
      /--rule: no rule "nope" \(rules: data\)/,
    );
  });

  it('--dry-run --json prints what it saw and changes nothing', async () => {
    await makeS3Client().send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'users.bin' }),
    );
    const run = await s3az(
      ['cleanup', '--stage', 'cleanup', '--config', configPath, '--dry-run', '--json'],
      stackEnv(),
    );
    expect(run.code).toBe(0);
    const output = JSON.parse(run.stdout);
    expect(output).toMatchObject({
      target: 'stack s3-azure-replicator-cleanup (us-east-1)',
      dryRun: true,
      olderThan: '7d',
      olderThanMs: 604_800_000,
      items: [],
    });
    // The emulator's uploads are an IAM user's, never a stack's role session.
    expect(output.counts).toEqual([
      expect.objectContaining({ side: 's3', container: bucket, seen: 1, otherWriters: 1 }),
      expect.objectContaining({ side: 'azure', container, seen: 0 }),
    ]);
    const text = await s3az(
      ['cleanup', '--stage', 'cleanup', '--config', configPath, '--dry-run'],
      stackEnv(),
    );
    expect(text.code).toBe(0);
    expect(text.stdout.split('\n')).toEqual([
      `rule data s3://${bucket}: 1 multipart upload; would abort 0, another writer's 1, too recent 0`,
      `rule data az://${container}: 0 uncommitted blobs; would delete 0, another writer's 0, too recent 0`,
      'stack s3-azure-replicator-cleanup (us-east-1): staged writes of the replicator older than 7d: 0 to clean up (dry run: nothing changed)',
      '',
    ]);
    // --initiator names another principal as the replicator's: the upload is then its own, and
    // too recent to abort.
    const named = await s3az(
      [
        'cleanup',
        '--stage',
        'cleanup',
        '--config',
        configPath,
        '--initiator',
        'arn:aws:iam::000000000000:user/',
        '--json',
      ],
      stackEnv(),
    );
    expect(named.code).toBe(0);
    expect(JSON.parse(named.stdout).counts[0]).toMatchObject({
      seen: 1,
      otherWriters: 0,
      recent: 1,
      cleaned: 0,
    });
    expectOneLineError(
      await s3az(
        ['cleanup', '--stage', 'cleanup', '--config', configPath, '--initiator', 'arn:aws:'],
        stackEnv(),
      ),
      /--initiator: "arn:aws:" would match too many initiators/,
    );
    const left = await makeS3Client().send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(left.Uploads?.map((upload) => upload.Key)).toEqual(['users.bin']);
  });
});
