import { CreateBucketCommand } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
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
import { RetryableError } from '../../src/errors.ts';
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
  const out = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queueUrl,
      MaxNumberOfMessages: 1,
      WaitTimeSeconds: 5,
      AttributeNames: ['All'],
    }),
  );
  const message = out.Messages?.[0] as Message;
  return {
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body: message.Body ?? '',
    attributes: {
      ApproximateReceiveCount: message.Attributes?.ApproximateReceiveCount ?? '1',
      SentTimestamp: message.Attributes?.SentTimestamp ?? '0',
      SenderId: 'local',
      ApproximateFirstReceiveTimestamp: '0',
    },
    messageAttributes: {},
    md5OfBody: message.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:tasks',
    awsRegion: 'us-east-1',
  };
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
