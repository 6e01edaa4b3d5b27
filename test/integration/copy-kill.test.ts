import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  CreateBucketCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { ContainerClient } from '@azure/storage-blob';
import type { SQSRecord } from 'aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import { readReplicaMarker } from '../../src/core/metadata.ts';
import type { CopyTask } from '../../src/core/route.ts';
import { REPLICATOR_ACCESS_KEY_PREFIX } from '../../src/local/emulators.ts';
import { recordOf } from '../../src/local/queue-runner.ts';
import { cleanup, localInitiators } from '../../src/ops/cleanup.ts';
import { processTaskRecord } from '../../src/queue/task-record.ts';
import { AzureBlobObjectStore, blockIdFor } from '../../src/stores/azure-blob.ts';
import type { ObjectStore } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import {
  emulatorEnv,
  makeBlobServiceClient,
  makeS3Client,
  makeSqsClient,
  uniqueName,
} from '../support/emulators.ts';
import { putObject, readAll } from '../support/streams.ts';

const MiB = 1024 * 1024;
// The emulators cap request bodies near 11 MiB: small parts, and enough of them to stop between.
const PART = 5 * MiB;
const PARTS = 6;
/** Parts the killed process reports staged before it is killed. */
const KILL_AFTER = 2;
const CHILD = fileURLToPath(new URL('../support/copy-kill-child.ts', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
// The child exits if this test process goes away, as the emulator children do.
const EXIT_WITH_PARENT = new URL('../../src/local/exit-with-parent.ts', import.meta.url).href;
const HOUR = 3_600_000;

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let sqs: SQSClient;
let s3Client: S3Client;
let s3: S3ObjectStore;
let container: ContainerClient;
let azure: AzureBlobObjectStore;

beforeAll(async () => {
  sqs = makeSqsClient();
  s3Client = makeS3Client();
  const bucket = uniqueName('kill');
  await s3Client.send(new CreateBucketCommand({ Bucket: bucket }));
  s3 = new S3ObjectStore(s3Client, bucket);
  container = makeBlobServiceClient().getContainerClient(uniqueName('kill'));
  await container.create();
  azure = new AzureBlobObjectStore(container);
});

/** The rule both runs copy by: 5 MiB parts, two ranges at a time (four pulls). */
const config = () => ({
  rules: [
    {
      name: 'kill',
      s3: { bucket: s3.container },
      azure: { accountUrl: 'http://127.0.0.1:1/devstoreaccount1', container: azure.container },
      partSize: '5MiB',
      concurrency: 2,
    },
  ],
});

interface Urls {
  queueUrl: string;
  deadLetterQueueUrl: string;
}

async function queues(): Promise<Urls> {
  const queueUrl =
    (
      await sqs.send(
        // A message received by a process that dies is visible again 2 s later.
        new CreateQueueCommand({
          QueueName: uniqueName('tasks'),
          Attributes: { VisibilityTimeout: '2' },
        }),
      )
    ).QueueUrl ?? '';
  const deadLetterQueueUrl =
    (await sqs.send(new CreateQueueCommand({ QueueName: uniqueName('dlq') }))).QueueUrl ?? '';
  return { queueUrl, deadLetterQueueUrl };
}

function taskFor(key: string, sourceSide: 's3' | 'azure'): CopyTask {
  const [source, destination] = sourceSide === 's3' ? [s3, azure] : [azure, s3];
  return {
    rule: 'kill',
    kind: 'created',
    sourceSide,
    sourceContainer: source.container,
    sourceKey: key,
    destinationContainer: destination.container,
    destinationKey: key,
    eventTime: new Date().toISOString(),
    correlationId: `c-${key}`,
  };
}

/** Sends the task; resolves with its message id. */
async function sendTask(queueUrl: string, task: CopyTask): Promise<string> {
  const out = await sqs.send(
    new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(task) }),
  );
  return out.MessageId ?? '';
}

interface Killed {
  signal: NodeJS.Signals | null;
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts the replicator child on the queue, waits until it reports `KILL_AFTER` staged parts,
 * and kills it with SIGKILL: no handler runs, nothing is aborted or sent on.
 */
async function killMidCopy(urls: Urls): Promise<Killed> {
  const env = emulatorEnv();
  const child = spawn(process.execPath, ['--import', TSX, '--import', EXIT_WITH_PARENT, CHILD], {
    // Only what the child needs: the emulators' endpoints and the replicator's own key.
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      ...(process.env.TMPDIR !== undefined && { TMPDIR: process.env.TMPDIR }),
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      AWS_ENDPOINT_URL_S3: env.s3Endpoint,
      AWS_ENDPOINT_URL_SQS: env.s3Endpoint,
      AWS_REGION: env.region,
      AWS_ACCESS_KEY_ID: env.replicatorAccessKeyId,
      AWS_SECRET_ACCESS_KEY: env.secretAccessKey,
      AZURE_STORAGE_CONNECTION_STRING: env.azureConnectionString,
      S3AZ_KILL_QUEUE_URL: urls.queueUrl,
      S3AZ_KILL_DLQ_URL: urls.deadLetterQueueUrl,
      S3AZ_KILL_CONFIG: JSON.stringify(config()),
      S3AZ_KILL_HOLD_AFTER: String(KILL_AFTER),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if ((stdout.match(/^staged \d+$/gm) ?? []).length >= KILL_AFTER) resolve();
      });
      void exited.then(({ code, signal }) =>
        reject(
          new Error(
            `the copy child exited (${code ?? signal}) before it staged ${KILL_AFTER} parts: ${stdout}${stderr}`,
          ),
        ),
      );
    });
  } finally {
    child.kill('SIGKILL');
  }
  const { code, signal } = await exited;
  return { code, signal, stdout, stderr };
}

/** Receives the task again once its visibility timeout has run out (a receive loop, no sleep). */
async function redelivered(queueUrl: string): Promise<SQSRecord> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 1,
        WaitTimeSeconds: 1,
        AttributeNames: ['All'],
      }),
    );
    const message = out.Messages?.[0];
    if (!message) continue;
    return recordOf(message, 'arn:aws:sqs:us-east-1:000000000000:tasks', 'us-east-1');
  }
  throw new Error('the killed task was not delivered again within 20 s');
}

/** The store, counting the parts it stages, whichever way (stagePart, stagePartStream, …FromUrl). */
function countingParts<T extends ObjectStore>(store: T): { store: T; sent: () => number } {
  let sent = 0;
  const wrapped = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      if (typeof property !== 'string' || !property.startsWith('stagePart')) {
        return value.bind(target);
      }
      return async (...args: unknown[]) => {
        const result: unknown = await (value as (...a: unknown[]) => unknown).apply(target, args);
        sent += 1;
        return result;
      };
    },
  });
  return { store: wrapped, sent: () => sent };
}

/** The next run, in this process, with the same rule; `destination` counts what it stages. */
async function nextRun(urls: Urls, record: SQSRecord, destination: ObjectStore) {
  return processTaskRecord(record, {
    sqs,
    ...urls,
    rules: validateConfig(config()).rules,
    storesFor: (_rule, task) =>
      task.sourceSide === 's3' ? { source: s3, destination } : { source: azure, destination },
  });
}

/** A blob's blocks of one list, with the staging id and part number their ids name. */
async function blocksOf(key: string, list: 'committed' | 'uncommitted') {
  const out = await container.getBlockBlobClient(key).getBlockList(list);
  const blocks = (list === 'committed' ? out.committedBlocks : out.uncommittedBlocks) ?? [];
  return blocks.map((block) => {
    const [, stagingId, part] =
      /^(.+)-(\d+)$/.exec(Buffer.from(block.name, 'base64').toString()) ?? [];
    return { name: block.name, stagingId, partNumber: Number(part), size: block.size };
  });
}

/** What the killed child wrote: one line per staged part, and none of the emulators' keys. */
function expectQuietKill(killed: Killed): void {
  expect(killed.signal).toBe('SIGKILL');
  expect(killed.stdout).toMatch(/^(staged \d+\n)+$/);
  const env = emulatorEnv();
  for (const secret of [env.secretAccessKey, env.azureAccountKey]) {
    expect(killed.stdout).not.toContain(secret);
    expect(killed.stderr).not.toContain(secret);
  }
}

describe('A copy killed with SIGKILL mid-copy', () => {
  it('S3 to Azure: the next run commits the blocks the killed run staged, byte-identical', async () => {
    // Prepare
    const urls = await queues();
    const key = `kill/${uniqueName('to-azure')}.bin`;
    const body = randomBytes(PARTS * PART);
    await putObject(s3, key, body);
    const sourceHead = await s3.head(key);
    const messageId = await sendTask(urls.queueUrl, taskFor(key, 's3'));
    // Act: a first run killed once it has staged blocks.
    const killed = await killMidCopy(urls);
    const destinationAtKill = await azure.head(key);
    const stagedAtKill = await blocksOf(key, 'uncommitted');
    const stagingId = stagedAtKill[0]?.stagingId ?? '';
    // Act: the next run, on the task SQS delivers again.
    const record = await redelivered(urls.queueUrl);
    const counting = countingParts(azure);
    const outcome = await nextRun(urls, record, counting.store);
    // Assess: the kill was mid-copy (blocks of one staging, no blob yet).
    expectQuietKill(killed);
    expect(destinationAtKill).toBeUndefined();
    expect(stagedAtKill.length).toBeGreaterThanOrEqual(KILL_AFTER);
    expect(stagedAtKill.length).toBeLessThan(PARTS);
    expect(stagedAtKill.every((block) => block.stagingId === stagingId)).toBe(true);
    // Assess: the next run completed it from those blocks.
    expect(record.messageId).toBe(messageId);
    expect(record.attributes.ApproximateReceiveCount).toBe('2');
    expect(outcome).toMatchObject({ action: 'copied', bytes: body.length });
    expect(counting.sent()).toBeLessThanOrEqual(PARTS - stagedAtKill.length);
    expect((await blocksOf(key, 'committed')).map((block) => block.name)).toEqual(
      Array.from({ length: PARTS }, (_, index) => blockIdFor(stagingId, index + 1)),
    );
    expect(sha(await readAll((await azure.get(key)).body))).toBe(sha(body));
    const head = await azure.head(key);
    expect(head?.size).toBe(body.length);
    expect(readReplicaMarker(head?.metadata ?? {})).toMatchObject({
      origin: 's3',
      sourceEtag: sourceHead?.etag,
      rule: 'kill',
      size: body.length,
    });
  });

  it("Azure to S3: the next run commits a new upload, byte-identical, and cleanup finds the killed run's", async () => {
    // Prepare
    const urls = await queues();
    const key = `kill/${uniqueName('to-s3')}.bin`;
    const body = randomBytes(PARTS * PART);
    await putObject(azure, key, body);
    const sourceHead = await azure.head(key);
    const messageId = await sendTask(urls.queueUrl, taskFor(key, 'azure'));
    // Act: a first run killed once it has staged parts.
    const killed = await killMidCopy(urls);
    const destinationAtKill = await s3.head(key);
    const uploads = (
      await s3Client.send(new ListMultipartUploadsCommand({ Bucket: s3.container, Prefix: key }))
    ).Uploads?.filter((upload) => upload.Key === key);
    const killedUploadId = uploads?.[0]?.UploadId ?? '';
    const partsAtKill = (
      await s3Client.send(
        new ListPartsCommand({ Bucket: s3.container, Key: key, UploadId: killedUploadId }),
      )
    ).Parts;
    // Act: the next run, on the task SQS delivers again.
    const record = await redelivered(urls.queueUrl);
    const outcome = await nextRun(urls, record, s3);
    // Assess: the kill was mid-copy (one open upload with parts, no object yet).
    expectQuietKill(killed);
    expect(destinationAtKill).toBeUndefined();
    expect(uploads).toHaveLength(1);
    expect(partsAtKill?.length ?? 0).toBeGreaterThanOrEqual(KILL_AFTER);
    expect(partsAtKill?.length ?? 0).toBeLessThan(PARTS);
    // Assess: the next run completed it, whole, from the source.
    expect(record.messageId).toBe(messageId);
    expect(record.attributes.ApproximateReceiveCount).toBe('2');
    expect(outcome).toMatchObject({ action: 'copied', bytes: body.length });
    expect(sha(await readAll((await s3.get(key)).body))).toBe(sha(body));
    const head = await s3.head(key);
    expect(head?.size).toBe(body.length);
    expect(readReplicaMarker(head?.metadata ?? {})).toMatchObject({
      origin: 'azure',
      sourceEtag: sourceHead?.etag,
      rule: 'kill',
      size: body.length,
    });
    // Assess: the killed run's upload is left open, and `s3az cleanup` knows it for the replicator's.
    const found = await cleanup(
      validateConfig(config()).rules,
      {
        clientsOf: () => ({ s3: s3Client, container }),
        isOwnInitiator: localInitiators(REPLICATOR_ACCESS_KEY_PREFIX),
      },
      { olderThanMs: HOUR, dryRun: true, now: () => Date.now() + 2 * HOUR },
    );
    expect(found.items.filter((item) => item.side === 's3' && item.key === key)).toEqual([
      expect.objectContaining({ action: 'would abort', uploadId: killedUploadId }),
    ]);
  });
});
