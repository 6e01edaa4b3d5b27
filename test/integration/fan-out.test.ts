import { createHash, randomBytes } from 'node:crypto';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import { PullMemory } from '../../src/copy/pull-memory.ts';
import { readReplicaMarker } from '../../src/core/metadata.ts';
import type { CopyTask } from '../../src/core/route.ts';
import { recordOf } from '../../src/local/queue-runner.ts';
import { processTaskRecord, type TaskRecordDependencies } from '../../src/queue/task-record.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import type { ObjectStore } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import {
  makeBlobServiceClient,
  makeS3Client,
  makeSqsClient,
  uniqueName,
} from '../support/emulators.ts';
import { putObject, readAll } from '../support/streams.ts';

const MiB = 1024 * 1024;
// 10 parts of 5 MiB (the last 3 MiB); ranges of 2 parts: 5 range tasks and a finishing task.
const SIZE = 48 * MiB;
const RANGES = 5;

let sqs: SQSClient;
let s3: S3ObjectStore;
let azure: AzureBlobObjectStore;

beforeAll(async () => {
  sqs = makeSqsClient();
  const client = makeS3Client();
  const bucket = uniqueName('fan');
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  s3 = new S3ObjectStore(client, bucket);
  const container = makeBlobServiceClient().getContainerClient(uniqueName('fan'));
  await container.create();
  azure = new AzureBlobObjectStore(container);
});

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function createQueue(name: string, visibility: number): Promise<string> {
  const out = await sqs.send(
    new CreateQueueCommand({
      QueueName: uniqueName(name),
      Attributes: { VisibilityTimeout: String(visibility) },
    }),
  );
  return out.QueueUrl ?? '';
}

/** The store, counting the commits of staged uploads it made. */
function countingCommits<T extends ObjectStore>(store: T): { store: T; commits: () => number } {
  let commits = 0;
  const wrapped = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      if (property !== 'commitStaged') return value.bind(target);
      return async (...args: unknown[]) => {
        const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        commits += 1;
        return result;
      };
    },
  });
  return { store: wrapped, commits: () => commits };
}

interface Run {
  /** Bodies of the messages processed, by fan-out role ('task' for a plain one). */
  processed: Map<string, number>;
  dropped: number;
}

/**
 * Runs `runners` Lambda-like consumers of the tasks queue side by side until `done` holds and
 * the queue gives nothing for a while: each receives one message, processes it, and deletes it
 * when processing resolves (a rejection leaves it for its visibility timeout). `drop` may take
 * a message away unprocessed (a lost task).
 */
async function runUntil(
  queueUrl: string,
  dependencies: TaskRecordDependencies,
  runners: number,
  done: () => Promise<boolean>,
  drop?: (fanOut: { role?: string; first?: number } | undefined) => boolean,
): Promise<Run> {
  const run: Run = { processed: new Map(), dropped: 0 };
  const deadline = Date.now() + 60_000;
  let finished = false;
  const runner = async () => {
    let idle = 0;
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
      if (!message) {
        idle += 1;
        if (finished || ((await done()) && idle >= 3)) {
          finished = true;
          return;
        }
        continue;
      }
      idle = 0;
      const fanOut = (JSON.parse(message.Body ?? '{}') as { fanOut?: { role?: string } }).fanOut;
      const remove = () =>
        sqs.send(
          new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle }),
        );
      if (drop?.(fanOut)) {
        run.dropped += 1;
        await remove();
        continue;
      }
      const role = fanOut?.role ?? 'task';
      run.processed.set(role, (run.processed.get(role) ?? 0) + 1);
      try {
        await processTaskRecord(
          recordOf(message, 'arn:aws:sqs:us-east-1:000000000000:tasks', 'us-east-1'),
          dependencies,
        );
        await remove();
      } catch {
        // Left for its visibility timeout, as Lambda leaves a failed record.
      }
    }
    throw new Error('the runners did not finish within 60 s');
  };
  await Promise.all(Array.from({ length: runners }, runner));
  return run;
}

function setup(direction: 's3-to-azure' | 'azure-to-s3', queueUrl: string, dlq: string) {
  const s3Side = countingCommits(s3);
  const azureSide = countingCommits(azure);
  const dependencies: TaskRecordDependencies = {
    sqs,
    queueUrl,
    deadLetterQueueUrl: dlq,
    rules: validateConfig({
      rules: [
        {
          name: 'fan',
          s3: { bucket: s3.container },
          azure: { accountUrl: 'http://127.0.0.1:1/devstoreaccount1', container: azure.container },
          partSize: '5MiB',
          concurrency: 2,
          fanOutAbove: '20MiB',
          fanOutRangeSize: '10MiB',
        },
      ],
    }).rules,
    storesFor: (_rule, task) =>
      task.sourceSide === 's3'
        ? { source: s3, destination: azureSide.store }
        : { source: azure, destination: s3Side.store },
    pullMemory: new PullMemory(),
    fanOutTiming: { checkSeconds: 1, quietChecks: 2, maxReissues: 3 },
  };
  const [source, destination, commits] =
    direction === 's3-to-azure' ? [s3, azure, azureSide.commits] : [azure, s3, s3Side.commits];
  return { dependencies, source, destination, commits };
}

function taskFor(source: ObjectStore, destination: ObjectStore, key: string): CopyTask {
  return {
    rule: 'fan',
    kind: 'created',
    sourceSide: source.side,
    sourceContainer: source.container,
    sourceKey: key,
    destinationContainer: destination.container,
    destinationKey: key,
    eventTime: new Date().toISOString(),
    correlationId: `c-${key}`,
  };
}

describe('Fan-out of a very large object over range tasks', () => {
  describe.each([['s3-to-azure'], ['azure-to-s3']] as const)('%s', (direction) => {
    it('copies over several concurrent runners and commits exactly once, even with the task delivered twice', async () => {
      // Prepare
      const queueUrl = await createQueue('fan', 30);
      const dlq = await createQueue('fan-dlq', 30);
      const { dependencies, source, destination, commits } = setup(direction, queueUrl, dlq);
      const key = `${direction}/twice.bin`;
      const body = randomBytes(SIZE);
      await putObject(source, key, body);
      const message = JSON.stringify(taskFor(source, destination, key));
      await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: message }));
      await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: message }));
      // Act
      const run = await runUntil(
        queueUrl,
        dependencies,
        3,
        async () => (await destination.head(key)) !== undefined,
      );
      // Assess
      expect(run.processed.get('range')).toBeGreaterThanOrEqual(RANGES);
      expect(run.processed.get('finish')).toBeGreaterThanOrEqual(1);
      expect(commits()).toBe(1);
      expect(sha(await readAll((await destination.get(key)).body))).toBe(sha(body));
      const head = await destination.head(key);
      const marker = readReplicaMarker(head?.metadata ?? {});
      expect(marker).toMatchObject({ origin: source.side, rule: 'fan', size: SIZE });
    });

    it('sends a lost range task again and completes', async () => {
      // Prepare: the first range task ever received is taken away unprocessed.
      const queueUrl = await createQueue('fan-lost', 30);
      const dlq = await createQueue('fan-lost-dlq', 30);
      const { dependencies, source, destination, commits } = setup(direction, queueUrl, dlq);
      const key = `${direction}/lost.bin`;
      const body = randomBytes(SIZE);
      await putObject(source, key, body);
      await sqs.send(
        new SendMessageCommand({
          QueueUrl: queueUrl,
          MessageBody: JSON.stringify(taskFor(source, destination, key)),
        }),
      );
      let lost = false;
      // Act
      const run = await runUntil(
        queueUrl,
        dependencies,
        2,
        async () => (await destination.head(key)) !== undefined,
        (fanOut) => {
          if (lost || fanOut?.role !== 'range') return false;
          lost = true;
          return true;
        },
      );
      // Assess
      expect(run.dropped).toBe(1);
      // The lost one came back as a new range task.
      expect(run.processed.get('range')).toBe(RANGES);
      expect(commits()).toBe(1);
      expect(sha(await readAll((await destination.get(key)).body))).toBe(sha(body));
    });
  });
  it('dead-letters the finishing task as no-progress when its ranges are never staged', async () => {
    // Prepare: every range task is lost, first and re-sent ones alike.
    const queueUrl = await createQueue('fan-stuck', 30);
    const dlq = await createQueue('fan-stuck-dlq', 30);
    const { dependencies, source, destination } = setup('azure-to-s3', queueUrl, dlq);
    dependencies.fanOutTiming = { checkSeconds: 1, quietChecks: 1, maxReissues: 2 };
    const key = 'stuck.bin';
    await putObject(source, key, randomBytes(SIZE));
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: queueUrl,
        MessageBody: JSON.stringify(taskFor(source, destination, key)),
      }),
    );
    const letters: Message[] = [];
    // Act
    const run = await runUntil(
      queueUrl,
      dependencies,
      1,
      async () => {
        const out = await sqs.send(
          new ReceiveMessageCommand({ QueueUrl: dlq, MessageAttributeNames: ['All'] }),
        );
        letters.push(...(out.Messages ?? []));
        return letters.length > 0;
      },
      (fanOut) => fanOut?.role === 'range',
    );
    // Assess: the first ranges and two rounds of re-sent ones were lost, then it gave up.
    expect(run.dropped).toBe(3 * RANGES);
    expect(letters).toHaveLength(1);
    expect(letters[0]?.MessageAttributes?.reason?.StringValue).toBe('no-progress');
    expect(letters[0]?.MessageAttributes?.error?.StringValue).toMatch(
      /sent 2 times without a new part staged \(10 of 10 parts missing\)/,
    );
    expect(JSON.parse(letters[0]?.Body ?? '{}')).toMatchObject({ fanOut: { role: 'finish' } });
    expect(await destination.head(key)).toBeUndefined();
  });
});
