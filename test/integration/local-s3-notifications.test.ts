import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketNotificationConfigurationCommand,
  PutBucketNotificationConfigurationCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
} from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { parseS3Notification } from '../../src/events/s3-notification.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import { makeS3Client, makeSqsClient, uniqueName } from '../support/emulators.ts';
import { putObject } from '../support/streams.ts';

const s3 = makeS3Client();
const sqs = makeSqsClient();

async function subscribed(filter?: { prefix: string }) {
  const bucket = uniqueName('notify');
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const queueUrl =
    (await sqs.send(new CreateQueueCommand({ QueueName: uniqueName('notify') }))).QueueUrl ?? '';
  const arn =
    (
      await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }),
      )
    ).Attributes?.QueueArn ?? '';
  await s3.send(
    new PutBucketNotificationConfigurationCommand({
      Bucket: bucket,
      NotificationConfiguration: {
        QueueConfigurations: [
          {
            Id: 'to-queue',
            QueueArn: arn,
            Events: ['s3:ObjectCreated:*', 's3:ObjectRemoved:*'],
            ...(filter && {
              Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: filter.prefix }] } },
            }),
          },
        ],
      },
    }),
  );
  return { bucket, queueUrl };
}

/** Receives messages until `count` have arrived (deadline 10 s), deleting each. */
async function receive(queueUrl: string, count: number): Promise<string[]> {
  const bodies: string[] = [];
  const deadline = Date.now() + 10_000;
  while (bodies.length < count && Date.now() < deadline) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
      }),
    );
    for (const message of out.Messages ?? []) {
      bodies.push(message.Body ?? '');
      await sqs.send(
        new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle }),
      );
    }
  }
  return bodies;
}

describe('Local S3: event notifications', () => {
  it('keeps the configuration and confirms it with a test event', async () => {
    const { bucket, queueUrl } = await subscribed();
    const out = await s3.send(new GetBucketNotificationConfigurationCommand({ Bucket: bucket }));
    expect(out.QueueConfigurations?.[0]?.Events).toEqual([
      's3:ObjectCreated:*',
      's3:ObjectRemoved:*',
    ]);
    const [test] = await receive(queueUrl, 1);
    expect(JSON.parse(test ?? '{}').Event).toBe('s3:TestEvent');
    expect(parseS3Notification(test ?? '').events).toEqual([]);
  });

  it('sends what S3 sends after puts, copies, multipart completions and deletes', async () => {
    const { bucket, queueUrl } = await subscribed();
    await receive(queueUrl, 1);
    const put = await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'dir/a b+c.txt', Body: 'hello' }),
    );
    await s3.send(
      new CopyObjectCommand({
        Bucket: bucket,
        Key: 'copy.txt',
        CopySource: `${bucket}/dir/a%20b%2Bc.txt`,
      }),
    );
    await putObject(new S3ObjectStore(s3, bucket), 'large.bin', Buffer.alloc(9 * 1024 * 1024, 1));
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'copy.txt' }));
    await s3.send(
      new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: 'large.bin' }] } }),
    );
    const bodies = await receive(queueUrl, 5);
    const records = bodies.map((body) => JSON.parse(body).Records[0]);
    expect(records.map((record) => record.eventName)).toEqual([
      'ObjectCreated:Put',
      'ObjectCreated:Copy',
      'ObjectCreated:CompleteMultipartUpload',
      'ObjectRemoved:Delete',
      'ObjectRemoved:Delete',
    ]);
    expect(records[0].s3.object).toMatchObject({
      key: 'dir/a+b%2Bc.txt',
      size: 5,
      eTag: put.ETag?.replace(/"/g, ''),
    });
    const events = bodies.flatMap((body) => parseS3Notification(body).events);
    expect(events.map((event) => event.key)).toEqual([
      'dir/a b+c.txt',
      'copy.txt',
      'large.bin',
      'copy.txt',
      'large.bin',
    ]);
    expect(events[2]?.size).toBe(9 * 1024 * 1024);
    const sequencers = events.map((event) => event.sequencer ?? '');
    expect([...sequencers].sort()).toEqual(sequencers);
  });

  it('sends only what the filter selects, and nothing for a failed write', async () => {
    const { bucket, queueUrl } = await subscribed({ prefix: 'in/' });
    await receive(queueUrl, 1);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'out/x', Body: 'x' }));
    await s3
      .send(new PutObjectCommand({ Bucket: bucket, Key: 'in/y', Body: 'y', IfNoneMatch: '*' }))
      .catch(() => undefined);
    await s3
      .send(new PutObjectCommand({ Bucket: bucket, Key: 'in/y', Body: 'z', IfNoneMatch: '*' }))
      .catch(() => undefined);
    const bodies = await receive(queueUrl, 1);
    expect(bodies.map((body) => JSON.parse(body).Records[0].s3.object.key)).toEqual(['in/y']);
    // Nothing more arrives: the refused second write and the unselected key sent nothing.
    const out = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1 }),
    );
    expect(out.Messages ?? []).toEqual([]);
  });
});
