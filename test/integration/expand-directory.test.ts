import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import type { CopyTask } from '../../src/core/route.ts';
import { recordOf } from '../../src/local/queue-runner.ts';
import { planBatch } from '../../src/queue/plan-batch.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import {
  emulatorEnv,
  makeBlobServiceClient,
  makeS3Client,
  makeSqsClient,
  planQueues,
  queueDepth,
  uniqueName,
} from '../support/emulators.ts';
import { blobEvent, nextAzureSequencer } from '../support/notifications.ts';

const EVENTS_ARN = 'arn:aws:sqs:us-east-1:0:events';

/**
 * A rule over a fresh bucket and container, `copies` objects under `new/` on Azure and
 * `replicas` objects under `old/` on S3 (what an ADLS Gen2 rename of old -> new leaves), and
 * the DirectoryRenamed event of that rename in the events queue.
 */
async function renamedDirectory(copies: number, replicas: number) {
  const sqs = makeSqsClient();
  const s3Client = makeS3Client();
  const bucket = uniqueName('dir');
  await s3Client.send(new CreateBucketCommand({ Bucket: bucket }));
  const container = makeBlobServiceClient().getContainerClient(uniqueName('dir'));
  await container.create();
  const queues = await planQueues(sqs);
  const name = (i: number) => String(i).padStart(3, '0');
  await Promise.all([
    ...Array.from({ length: copies }, (_, i) =>
      container.getBlockBlobClient(`new/f${name(i)}`).upload('x', 1),
    ),
    ...Array.from({ length: replicas }, (_, i) =>
      s3Client.send(new PutObjectCommand({ Bucket: bucket, Key: `old/f${name(i)}`, Body: 'x' })),
    ),
  ]);
  const { azureAccountUrl } = emulatorEnv();
  const rule = validateConfig({
    rules: [
      {
        name: 'dirs',
        s3: { bucket },
        azure: { accountUrl: azureAccountUrl, container: container.containerName },
        deletes: 'mirror',
      },
    ],
  }).rules;
  const event = {
    ...blobEvent('Microsoft.Storage.BlobCreated', azureAccountUrl, container.containerName, 'new', {
      sequencer: nextAzureSequencer(),
    }),
    eventType: 'Microsoft.Storage.DirectoryRenamed',
  };
  event.data = {
    ...event.data,
    api: 'RenameDirectory',
    destinationUrl: `${azureAccountUrl}/${container.containerName}/new`,
    sourceUrl: `${azureAccountUrl}/${container.containerName}/old`,
  } as typeof event.data;
  await sqs.send(
    new SendMessageCommand({ QueueUrl: queues.events, MessageBody: JSON.stringify(event) }),
  );
  const stores = {
    s3: new S3ObjectStore(s3Client, bucket),
    azure: new AzureBlobObjectStore(container),
  };
  const dependencies = {
    sqs,
    rules: rule,
    eventsQueueUrl: queues.events,
    eventsDeadLetterQueueUrl: queues.eventsDeadLetter,
    tasksQueueUrl: queues.tasks,
    storesOf: async () => stores,
  };
  /** Receives and deletes every message of a queue. */
  const drain = async (url: string): Promise<Message[]> => {
    const all: Message[] = [];
    for (;;) {
      const { Messages = [] } = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }),
      );
      if (Messages.length === 0) return all;
      for (const message of Messages) {
        all.push(message);
        await sqs.send(
          new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: message.ReceiptHandle }),
        );
      }
    }
  };
  return { sqs, queues, dependencies, drain };
}

describe('Function: planBatch (a large ADLS Gen2 directory)', () => {
  it('goes on in follow-up messages, and every object gets exactly its task', async () => {
    // Prepare
    const { sqs, queues, dependencies, drain } = await renamedDirectory(25, 12);
    // Act: the plan step runs on the events queue until it is empty.
    let messages = 0;
    for (;;) {
      const batch = await drain(queues.events);
      if (batch.length === 0) break;
      messages += batch.length;
      const response = await planBatch(
        batch.map((message) => recordOf(message, EVENTS_ARN, 'us-east-1')),
        { ...dependencies, directoryTasksPerMessage: 10, directoryPageSize: 10 },
      );
      expect(response.batchItemFailures).toEqual([]);
    }
    // Assess
    const tasks = (await drain(queues.tasks)).map(
      (message) => JSON.parse(message.Body ?? '{}') as CopyTask,
    );
    const keys = (kind: string) =>
      tasks
        .filter((task) => task.kind === kind)
        .map((task) => task.sourceKey)
        .sort();
    const names = (prefix: string, count: number) =>
      Array.from({ length: count }, (_, i) => `${prefix}f${String(i).padStart(3, '0')}`);
    expect(keys('created')).toEqual(names('new/', 25));
    expect(keys('deleted')).toEqual(names('old/', 12));
    // 10 tasks a message at most: the event and three follow-ups.
    expect(messages).toBe(4);
    expect(await queueDepth(sqs, queues.eventsDeadLetter)).toBe(0);
  });

  it('lists one page a message once the invocation nears its end', async () => {
    const { queues, dependencies, drain } = await renamedDirectory(6, 0);
    const stop = AbortSignal.abort();
    let messages = 0;
    for (;;) {
      const batch = await drain(queues.events);
      if (batch.length === 0) break;
      messages += batch.length;
      await planBatch(
        batch.map((message) => recordOf(message, EVENTS_ARN, 'us-east-1')),
        { ...dependencies, directoryPageSize: 4 },
        { stop },
      );
    }
    // Two pages of the new name (4 + 2 objects), one of the old name's (no) replicas.
    expect(messages).toBe(3);
    expect((await drain(queues.tasks)).length).toBe(6);
  });

  it('dead-letters a follow-up message that does not parse, with the reason', async () => {
    const { sqs, queues, dependencies, drain } = await renamedDirectory(0, 0);
    await drain(queues.events);
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: queues.events,
        MessageBody: JSON.stringify({ s3azDirectoryContinuation: { phase: 'sideways' } }),
      }),
    );
    const batch = await drain(queues.events);
    const response = await planBatch(
      batch.map((message) => recordOf(message, EVENTS_ARN, 'us-east-1')),
      dependencies,
    );
    expect(response.batchItemFailures).toEqual([]);
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queues.eventsDeadLetter,
        MessageAttributeNames: ['All'],
      }),
    );
    expect(Messages[0]?.MessageAttributes?.reason?.StringValue).toBe('malformed-event');
    expect(Messages[0]?.MessageAttributes?.error?.StringValue).toContain(
      'the directory continuation does not parse',
    );
  });
});
