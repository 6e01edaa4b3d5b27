import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { type Message, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import type { CopyTask } from '../../src/core/route.ts';
import { copyInline } from '../../src/queue/inline-copy.ts';
import { INLINE_COPY_BYTES, planBatch } from '../../src/queue/plan-batch.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import {
  emulatorEnv,
  makeBlobServiceClient,
  makeS3Client,
  makeSqsClient,
  planQueues,
  uniqueName,
} from '../support/emulators.ts';
import { nextS3Sequencer, s3Notification, s3Record } from '../support/notifications.ts';

const USER = 'AWS:AIDAPLANBATCHUSER';

/** An events-queue record as Lambda hands it to the plan step. */
function recordWith(body: string): SQSRecord {
  const messageId = uniqueName('message');
  return {
    messageId,
    receiptHandle: messageId,
    body,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(Date.now()),
      SenderId: 'local',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:0:events',
    awsRegion: 'us-east-1',
  };
}

/** Every task waiting in `queueUrl`. */
async function queuedTasks(sqs: SQSClient, queueUrl: string): Promise<CopyTask[]> {
  const messages: Message[] = [];
  for (;;) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }),
    );
    if (Messages.length === 0) break;
    messages.push(...Messages);
  }
  return messages.map((message) => JSON.parse(message.Body ?? '{}') as CopyTask);
}

describe('Function: planBatch (small new objects copied in the plan step)', () => {
  it('copies a small new object itself, and queues a large one, a grown one and one it could not copy', async () => {
    // Prepare: three objects in S3: small, small whose copy fails here, over the inline size.
    const sqs = makeSqsClient();
    const queues = await planQueues(sqs);
    const s3Client = makeS3Client();
    const bucket = uniqueName('inline');
    await s3Client.send(new CreateBucketCommand({ Bucket: bucket }));
    const container = makeBlobServiceClient().getContainerClient(uniqueName('inline'));
    await container.create();
    const stores = {
      s3: new S3ObjectStore(s3Client, bucket),
      azure: new AzureBlobObjectStore(container),
    };
    const rules = validateConfig({
      rules: [
        {
          name: 'inline',
          s3: { bucket },
          azure: { accountUrl: emulatorEnv().azureAccountUrl, container: container.containerName },
        },
      ],
    }).rules;
    const bodies = {
      small: Buffer.from('small and new'),
      failing: Buffer.from('this copy fails in the plan step'),
      large: randomBytes(INLINE_COPY_BYTES + 1),
    };
    const records = [];
    for (const [key, body] of Object.entries(bodies)) {
      const { ETag } = await s3Client.send(
        new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }),
      );
      records.push(
        s3Record(
          'ObjectCreated:Put',
          bucket,
          key,
          { etag: ETag ?? '', size: body.length, sequencer: nextS3Sequencer() },
          USER,
        ),
      );
    }
    // An object whose event announced 10 bytes, overwritten since with more than the plan
    // step copies: left to the copy step (its time budget, continuations, fan-out).
    await s3Client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'grown',
        Body: randomBytes(INLINE_COPY_BYTES + 1),
      }),
    );
    records.push(
      s3Record(
        'ObjectCreated:Put',
        bucket,
        'grown',
        { etag: '"0123456789abcdef0123456789abcdef"', size: 10, sequencer: nextS3Sequencer() },
        USER,
      ),
    );
    const tried: string[] = [];

    // Act
    const response = await planBatch(
      records.map((record) => recordWith(s3Notification(record))),
      {
        sqs,
        rules,
        eventsQueueUrl: queues.events,
        eventsDeadLetterQueueUrl: queues.eventsDeadLetter,
        tasksQueueUrl: queues.tasks,
        storesOf: async () => stores,
        copyInline: (task, signal) => {
          tried.push(task.sourceKey);
          if (task.sourceKey === 'failing') return Promise.reject(new Error('store refused'));
          return copyInline(
            task,
            {
              rules,
              storesFor: async (_rule, { sourceSide }) =>
                sourceSide === 's3'
                  ? { source: stores.s3, destination: stores.azure }
                  : { source: stores.azure, destination: stores.s3 },
            },
            signal,
          );
        },
      },
    );

    // Assess: the small one is in Azure and not queued; the other two are queued, not copied.
    expect(response.batchItemFailures).toEqual([]);
    expect(tried.sort()).toEqual(['failing', 'grown', 'small']);
    expect((await stores.azure.head('small'))?.size).toBe(bodies.small.length);
    expect(await stores.azure.head('failing')).toBeUndefined();
    expect(await stores.azure.head('grown')).toBeUndefined();
    const tasks = await queuedTasks(sqs, queues.tasks);
    expect(tasks.map((task) => task.sourceKey).sort()).toEqual(['failing', 'grown', 'large']);
    expect(tasks.find((task) => task.sourceKey === 'large')?.size).toBe(bodies.large.length);
  });
});

describe('Function: planBatch (tasks of one key in one batch)', () => {
  it("sends a user's delete beside the newer event of a replica written back after it", async () => {
    // Prepare: a user writes and then deletes s3 `k`; before the delete's task ran, the copy
    // step wrote a replica back to `k`, whose event (through EventBridge: no writer) is newest.
    const sqs = makeSqsClient();
    const queues = await planQueues(sqs);
    const bucket = uniqueName('plan');
    const rules = validateConfig({
      rules: [
        {
          name: 'plan',
          s3: { bucket },
          azure: { accountUrl: emulatorEnv().azureAccountUrl, container: uniqueName('plan') },
          deletes: 'mirror',
        },
      ],
    }).rules;
    const userWrite = s3Record(
      'ObjectCreated:Put',
      bucket,
      'k',
      { etag: '"0cc175b9c0f1b6a831c399e269772661"', size: 1, sequencer: nextS3Sequencer() },
      USER,
    );
    const userDelete = s3Record(
      'ObjectRemoved:Delete',
      bucket,
      'k',
      { sequencer: nextS3Sequencer() },
      USER,
    );
    const writeBack = s3Record(
      'ObjectCreated:Put',
      bucket,
      'k',
      { etag: '"92eb5ffee6ae2fec3ad71c777531578f"', size: 1, sequencer: nextS3Sequencer() },
      null,
    );

    // Act: the three events in one batch, the newest first.
    const response = await planBatch(
      [writeBack, userDelete, userWrite].map((record) => recordWith(s3Notification(record))),
      {
        sqs,
        rules,
        eventsQueueUrl: queues.events,
        eventsDeadLetterQueueUrl: queues.eventsDeadLetter,
        tasksQueueUrl: queues.tasks,
        storesOf: () => Promise.reject(new Error('no directory to expand here')),
        ownS3Principals: ['AWS:LOCALREPLICATORPLAN'],
      },
    );

    // Assess: one task of each kind; the user's delete is not dropped for the newer event.
    expect(response.batchItemFailures).toEqual([]);
    const tasks = await queuedTasks(sqs, queues.tasks);
    expect(tasks.map((task) => [task.kind, task.sequencer]).sort()).toEqual([
      ['created', writeBack.s3.object.sequencer],
      ['deleted', userDelete.s3.object.sequencer],
    ]);
    expect(tasks.find((task) => task.kind === 'deleted')).toMatchObject({
      sourceKey: 'k',
      writtenBy: 'user',
    });
    expect(tasks.find((task) => task.kind === 'created')).not.toHaveProperty('writtenBy');
  });

  it("lets every copy in flight listen on the invocation's stop, with no listener warning", async () => {
    // Prepare: more small new objects than copies at once, each copy listening as the SDK
    // does (a listener per request, and one more per failed request, a 404 included).
    const sqs = makeSqsClient();
    const queues = await planQueues(sqs);
    const rules = validateConfig({
      rules: [
        {
          name: 'listeners',
          s3: { bucket: 'listeners' },
          azure: { accountUrl: emulatorEnv().azureAccountUrl, container: 'listeners' },
        },
      ],
    }).rules;
    const records = Array.from({ length: 16 }, (_, index) =>
      recordWith(
        s3Notification(
          s3Record(
            'ObjectCreated:Put',
            'listeners',
            `key-${index}`,
            { etag: `"${index}"`, size: 10, sequencer: nextS3Sequencer() },
            USER,
          ),
        ),
      ),
    );
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    const stop = new AbortController();
    let inFlight = 0;
    let peak = 0;
    try {
      // Act
      const response = await planBatch(
        records,
        {
          sqs,
          rules,
          eventsQueueUrl: queues.events,
          eventsDeadLetterQueueUrl: queues.eventsDeadLetter,
          tasksQueueUrl: queues.tasks,
          storesOf: () => Promise.reject(new Error('no directory here')),
          copyInline: async (_task, signal) => {
            const listeners = [() => {}, () => {}, () => {}, () => {}];
            for (const listener of listeners) signal?.addEventListener('abort', listener);
            inFlight += 1;
            peak = Math.max(peak, inFlight);
            await new Promise((resolve) => setImmediate(resolve));
            inFlight -= 1;
            for (const listener of listeners) signal?.removeEventListener('abort', listener);
            return true;
          },
        },
        { stop: stop.signal },
      );
      await new Promise((resolve) => setImmediate(resolve));

      // Assess
      expect(response.batchItemFailures).toEqual([]);
      expect(peak).toBe(8);
      expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual(
        [],
      );
    } finally {
      process.off('warning', onWarning);
    }
  });
});
