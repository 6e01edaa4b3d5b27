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
import type { SQSRecord } from 'aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import { PullMemory } from '../../src/copy/pull-memory.ts';
import type { CopyTask } from '../../src/core/route.ts';
import { NotFoundError, RetryableError } from '../../src/errors.ts';
import { recordOf } from '../../src/local/queue-runner.ts';
import {
  parseTaskMessage,
  processTaskRecord,
  type TaskRecordDependencies,
  TimeBudgetExceededError,
} from '../../src/queue/task-record.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import type { ObjectStore } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import { countingParts } from '../support/counting-store.ts';
import {
  makeBlobServiceClient,
  makeS3Client,
  makeSqsClient,
  uniqueName,
} from '../support/emulators.ts';
import { putObject, readAll } from '../support/streams.ts';

let sqs: SQSClient;
let s3: S3ObjectStore;
let azure: AzureBlobObjectStore;

beforeAll(async () => {
  sqs = makeSqsClient();
  const client = makeS3Client();
  const bucket = uniqueName('rec');
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  s3 = new S3ObjectStore(client, bucket);
  const container = makeBlobServiceClient().getContainerClient(uniqueName('rec'));
  await container.create();
  azure = new AzureBlobObjectStore(container);
});

async function queues() {
  const queueUrl =
    (
      await sqs.send(
        // Visible again at once unless the processor delays it: the backoff is what the test sees.
        new CreateQueueCommand({
          QueueName: uniqueName('tasks'),
          Attributes: { VisibilityTimeout: '0' },
        }),
      )
    ).QueueUrl ?? '';
  const deadLetterQueueUrl =
    (await sqs.send(new CreateQueueCommand({ QueueName: uniqueName('dlq') }))).QueueUrl ?? '';
  return { queueUrl, deadLetterQueueUrl };
}

/** Sends a body and receives it back as Lambda would hand it over. */
async function asRecord(queueUrl: string, body: string): Promise<SQSRecord> {
  await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
  return nextRecord(queueUrl);
}

/** Receives the next message of the queue as Lambda would hand it over. */
async function nextRecord(queueUrl: string): Promise<SQSRecord> {
  const out = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queueUrl,
      MaxNumberOfMessages: 1,
      WaitTimeSeconds: 5,
      AttributeNames: ['All'],
    }),
  );
  const message = out.Messages?.[0] as Message;
  return recordOf(message, 'arn:aws:sqs:us-east-1:000000000000:tasks', 'us-east-1');
}

function dependencies(
  urls: { queueUrl: string; deadLetterQueueUrl: string },
  destination?: ObjectStore,
): TaskRecordDependencies {
  return {
    sqs,
    ...urls,
    rules: validateConfig({
      rules: [
        {
          name: 'r',
          s3: { bucket: s3.container },
          azure: { accountUrl: 'http://127.0.0.1:1/devstoreaccount1', container: azure.container },
        },
      ],
    }).rules,
    storesFor: (_rule, task) =>
      task.sourceSide === 's3'
        ? { source: s3, destination: destination ?? azure }
        : { source: azure, destination: s3 },
    pullMemory: new PullMemory(),
  };
}

const task = (key: string): CopyTask => ({
  rule: 'r',
  kind: 'created',
  sourceSide: 's3',
  sourceContainer: s3.container,
  sourceKey: key,
  destinationContainer: azure.container,
  destinationKey: key,
  eventTime: new Date().toISOString(),
  correlationId: `c-${key}`,
});

async function deadLetters(url: string) {
  const out = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: url,
      MaxNumberOfMessages: 10,
      WaitTimeSeconds: 2,
      MessageAttributeNames: ['All'],
    }),
  );
  return (out.Messages ?? []).map((m) => ({
    body: m.Body,
    reason: m.MessageAttributes?.reason?.StringValue,
    error: m.MessageAttributes?.error?.StringValue,
  }));
}

describe('Function: processTaskRecord', () => {
  it('runs a task from a real SQS record', async () => {
    const urls = await queues();
    await s3.put('ok.txt', Buffer.from('payload'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    const outcome = await processTaskRecord(
      await asRecord(urls.queueUrl, JSON.stringify(task('ok.txt'))),
      dependencies(urls),
    );
    expect(outcome).toMatchObject({ action: 'copied', bytes: 7 });
  });

  it.each([
    ['a key Azure cannot hold', () => JSON.stringify(task('trailing-dot.')), /ends in "\."/],
    ['a body that is not a task', () => '{"hello":1}', /not a copy task/],
    [
      'a task for an unknown rule',
      () => JSON.stringify({ ...task('x'), rule: 'nope' }),
      /rule "nope"/,
    ],
  ])(
    'dead-letters %s at once, with the reason, and succeeds the record',
    async (_label, makeBody, error) => {
      const body = makeBody();
      const urls = await queues();
      await s3.put('trailing-dot.', Buffer.alloc(0), {
        properties: {},
        metadata: {},
        condition: { kind: 'any' },
      });
      const outcome = await processTaskRecord(
        await asRecord(urls.queueUrl, body),
        dependencies(urls),
      );
      expect(outcome).toBe('dead-lettered');
      const [letter] = await deadLetters(urls.deadLetterQueueUrl);
      expect(letter?.body).toBe(body);
      expect(letter?.reason).toBe('permanent');
      expect(letter?.error).toMatch(error);
    },
  );

  it('skips an S3 folder marker (a key ending in /) with a named reason instead of dead-lettering it', async () => {
    const urls = await queues();
    await s3.put('folder/', Buffer.alloc(0), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    const outcome = await processTaskRecord(
      await asRecord(urls.queueUrl, JSON.stringify(task('folder/'))),
      dependencies(urls),
    );
    expect(outcome).toMatchObject({ action: 'skipped', reason: 'folder-marker' });
    expect(await deadLetters(urls.deadLetterQueueUrl)).toEqual([]);
  });

  it('fails a retryable record and delays its next receive', async () => {
    const urls = await queues();
    await s3.put('busy.txt', Buffer.from('x'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    const flaky = new Proxy(azure, {
      get(target, property, receiver) {
        if (property === 'head' || property === 'put' || property === 'putFromUrl')
          return async () => Promise.reject(new RetryableError('az: ServerBusy'));
        const value = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const record = await asRecord(urls.queueUrl, JSON.stringify(task('busy.txt')));
    await expect(processTaskRecord(record, dependencies(urls, flaky))).rejects.toBeInstanceOf(
      RetryableError,
    );
    // The message stays invisible for the backoff (30 s on the first receive), not redelivered now.
    const again = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: urls.queueUrl, WaitTimeSeconds: 1 }),
    );
    expect(again.Messages ?? []).toHaveLength(0);
    expect(await deadLetters(urls.deadLetterQueueUrl)).toEqual([]);
  });
});

describe('Function: processTaskRecord, a copy continued across invocations', () => {
  const MiB = 1024 * 1024;
  // The emulators cap request bodies at 11 MiB; real deployments use larger parts.
  const PART = 5 * MiB;
  const PARTS = 6;
  // A digest to compare contents by: equality of large buffers is slow to check and to print.
  const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

  /** Dependencies whose rule copies in 5 MiB parts, one at a time, to `s3Destination`. */
  function continuing(
    urls: { queueUrl: string; deadLetterQueueUrl: string },
    s3Destination: ObjectStore,
    maxContinuations?: number,
  ): TaskRecordDependencies {
    return {
      ...dependencies(urls),
      rules: validateConfig({
        rules: [
          {
            name: 'r',
            s3: { bucket: s3.container },
            azure: {
              accountUrl: 'http://127.0.0.1:1/devstoreaccount1',
              container: azure.container,
            },
            partSize: '5MiB',
            concurrency: 1,
          },
        ],
      }).rules,
      storesFor: () => ({ source: azure, destination: s3Destination }),
      ...(maxContinuations !== undefined && { maxContinuations }),
    };
  }

  const fromAzure = (key: string): CopyTask => ({
    ...task(key),
    sourceSide: 'azure',
    sourceContainer: azure.container,
    destinationContainer: s3.container,
  });

  /** S3, counting the parts staged; the budget runs out once `stopAfter` are staged. */
  function budgeted(stopAfter?: number) {
    const budget = new AbortController();
    const { store, sent } = countingParts(s3, (count) => {
      if (count === stopAfter) budget.abort(new TimeBudgetExceededError());
    });
    return { store, signal: budget.signal, sent };
  }

  /** A blob of PARTS parts, and a first run of its copy stopped after two of them. */
  async function stoppedAfterTwo(urls: { queueUrl: string; deadLetterQueueUrl: string }) {
    const key = `cont/${uniqueName('obj')}`;
    const body = randomBytes(PARTS * PART);
    await putObject(azure, key, body);
    const first = budgeted(2);
    const outcome = await processTaskRecord(
      await asRecord(urls.queueUrl, JSON.stringify(fromAzure(key))),
      continuing(urls, first.store),
      first.signal,
    );
    expect(outcome).toBe('continued');
    return { key, body, continued: await nextRecord(urls.queueUrl) };
  }

  it('goes on from the staged parts and sends only the missing ones', async () => {
    // Prepare
    const urls = await queues();
    const { key, body, continued } = await stoppedAfterTwo(urls);
    // Act
    const second = budgeted();
    const outcome = await processTaskRecord(continued, continuing(urls, second.store));
    // Assess
    expect(parseTaskMessage(continued.body).continuation).toMatchObject({
      count: 1,
      checkpoint: { partSize: PART, parts: [{ partNumber: 1 }, { partNumber: 2 }] },
    });
    expect(outcome).toMatchObject({ action: 'copied', bytes: body.length });
    expect(second.sent()).toBe(PARTS - 2);
    expect(sha(await readAll((await s3.get(key)).body))).toBe(sha(body));
  });

  it('goes on towards Azure from the blocks named after the source version', async () => {
    // Prepare: an S3 -> Azure copy stopped once two blocks are staged.
    const urls = await queues();
    const key = `cont/${uniqueName('obj')}`;
    const body = randomBytes(PARTS * PART);
    await putObject(s3, key, body);
    let stopAfter: number | undefined = 2;
    const budget = new AbortController();
    const counting = countingParts(azure, (count) => {
      if (count === stopAfter) budget.abort(new TimeBudgetExceededError());
    });
    const toAzure = (): TaskRecordDependencies => ({
      ...continuing(urls, s3),
      storesFor: () => ({ source: s3, destination: counting.store }),
    });
    const first = await processTaskRecord(
      await asRecord(urls.queueUrl, JSON.stringify(task(key))),
      toAzure(),
      budget.signal,
    );
    const continued = await nextRecord(urls.queueUrl);
    const uploadId = parseTaskMessage(continued.body).continuation?.checkpoint?.uploadId ?? '';
    // A pull in flight when the budget ran out may have been staged all the same.
    const stagedBefore = (await azure.listStaged({ key, uploadId })).length;
    stopAfter = undefined;
    const sentBefore = counting.sent();
    // Act
    const outcome = await processTaskRecord(continued, toAzure());
    // Assess
    expect(first).toBe('continued');
    expect(parseTaskMessage(continued.body).continuation).toMatchObject({ count: 1 });
    expect(outcome).toMatchObject({ action: 'copied', bytes: body.length });
    expect(stagedBefore).toBeGreaterThanOrEqual(2);
    expect(counting.sent() - sentBefore).toBe(PARTS - stagedBefore);
    expect(sha(await readAll((await azure.get(key)).body))).toBe(sha(body));
  });

  it('restarts cleanly on the new version when the source changed between two runs', async () => {
    // Prepare
    const urls = await queues();
    const { key, continued } = await stoppedAfterTwo(urls);
    const changed = randomBytes(PARTS * PART);
    await putObject(azure, key, changed);
    // Act
    const second = budgeted();
    const outcome = await processTaskRecord(continued, continuing(urls, second.store));
    // Assess
    expect(outcome).toMatchObject({ action: 'copied', bytes: changed.length });
    expect(second.sent()).toBe(PARTS);
    expect(sha(await readAll((await s3.get(key)).body))).toBe(sha(changed));
    const uploadId = parseTaskMessage(continued.body).continuation?.checkpoint?.uploadId ?? '';
    await expect(s3.listStaged({ key, uploadId })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('dead-letters a continuation that stages no new part as no-progress, keeping its checkpoint', async () => {
    // Prepare
    const urls = await queues();
    const { continued } = await stoppedAfterTwo(urls);
    const spent = budgeted(0);
    const budget = new AbortController();
    budget.abort(new TimeBudgetExceededError());
    // Act
    const outcome = await processTaskRecord(
      continued,
      continuing(urls, spent.store),
      budget.signal,
    );
    // Assess
    expect(outcome).toBe('dead-lettered');
    const [letter] = await deadLetters(urls.deadLetterQueueUrl);
    expect(letter?.reason).toBe('no-progress');
    expect(letter?.error).toMatch(/staged no new part/);
    expect(parseTaskMessage(letter?.body ?? '').continuation).toMatchObject({
      count: 2,
      checkpoint: { parts: [{ partNumber: 1 }, { partNumber: 2 }] },
    });
  });

  it('dead-letters a copy continued more often than allowed as too-many-continuations', async () => {
    // Prepare: one continuation allowed, and the first already used.
    const urls = await queues();
    const { continued } = await stoppedAfterTwo(urls);
    const again = budgeted(1);
    // Act
    const outcome = await processTaskRecord(
      continued,
      continuing(urls, again.store, 1),
      again.signal,
    );
    // Assess
    expect(outcome).toBe('dead-lettered');
    const [letter] = await deadLetters(urls.deadLetterQueueUrl);
    expect(letter?.reason).toBe('too-many-continuations');
    expect(parseTaskMessage(letter?.body ?? '').continuation).toMatchObject({
      count: 2,
      checkpoint: { parts: [{ partNumber: 1 }, { partNumber: 2 }, { partNumber: 3 }] },
    });
  });
});

describe('Function: processTaskRecord, a delete in doubt', () => {
  const mirrorDeletes = (
    urls: { queueUrl: string; deadLetterQueueUrl: string },
    deleteHoldSeconds: number,
  ): TaskRecordDependencies => {
    const base = dependencies(urls);
    return {
      ...base,
      rules: base.rules.map((rule) => ({ ...rule, deletes: 'mirror' as const })),
      deleteHoldSeconds,
    };
  };
  /** Processes a record and, when it succeeds, deletes it from the queue as Lambda does. */
  const handled = async (
    urls: { queueUrl: string },
    record: SQSRecord,
    with_: TaskRecordDependencies,
  ) => {
    const outcome = await processTaskRecord(record, with_);
    await sqs.send(
      new DeleteMessageCommand({ QueueUrl: urls.queueUrl, ReceiptHandle: record.receiptHandle }),
    );
    return outcome;
  };
  // A user deleted the Azure side just now; S3 holds a version dated in the same second.
  const deletedOnAzure = (key: string): CopyTask => ({
    ...task(key),
    kind: 'deleted',
    sourceSide: 'azure',
    sourceContainer: azure.container,
    destinationContainer: s3.container,
  });

  it('holds it, comes back with its hold after the delay, then deletes what no event carried across', async () => {
    const urls = await queues();
    await s3.put('held.txt', Buffer.from('x'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    const etag = (await s3.head('held.txt'))?.etag;
    const first = await handled(
      urls,
      await asRecord(urls.queueUrl, JSON.stringify(deletedOnAzure('held.txt'))),
      mirrorDeletes(urls, 1),
    );
    expect(first).toBe('continued');
    const again = await nextRecord(urls.queueUrl);
    expect(parseTaskMessage(again.body).hold).toMatchObject({ etag });
    expect(await s3.head('held.txt')).toBeDefined();
    expect(await handled(urls, again, mirrorDeletes(urls, 1))).toMatchObject({
      action: 'deleted',
    });
    expect(await s3.head('held.txt')).toBeUndefined();
  });

  it('starts a hold dated in the future again from now, so that it cannot last for ever', async () => {
    const urls = await queues();
    await s3.put('future.txt', Buffer.from('x'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    const etag = (await s3.head('future.txt'))?.etag ?? '';
    const body = JSON.stringify({
      ...deletedOnAzure('future.txt'),
      hold: { etag, since: '2100-01-01T00:00:00.000Z' },
    });
    const before = Date.now();
    expect(await handled(urls, await asRecord(urls.queueUrl, body), mirrorDeletes(urls, 1))).toBe(
      'continued',
    );
    const since = Date.parse(
      parseTaskMessage((await nextRecord(urls.queueUrl)).body).hold?.since ?? '',
    );
    expect(since).toBeGreaterThanOrEqual(before - 1000);
    expect(since).toBeLessThanOrEqual(Date.now());
  });

  it('decides at once when no hold is configured (0 seconds)', async () => {
    const urls = await queues();
    await s3.put('unheld.txt', Buffer.from('x'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    expect(
      await processTaskRecord(
        await asRecord(urls.queueUrl, JSON.stringify(deletedOnAzure('unheld.txt'))),
        mirrorDeletes(urls, 0),
      ),
    ).toMatchObject({ action: 'deleted' });
    expect(await s3.head('unheld.txt')).toBeUndefined();
  });
});
