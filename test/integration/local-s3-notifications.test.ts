import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketNotificationConfigurationCommand,
  PutBucketNotificationConfigurationCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseS3Notification } from '../../src/events/s3-notification.ts';
import { type RunningS3Emulator, startS3Emulator } from '../../src/local/s3-emulator.ts';
import {
  makeS3Client as makeS3ClientFrom,
  makeSqsClient as makeSqsClientFrom,
} from '../../src/stores/clients.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import { makeS3Client, makeSqsClient, uniqueName } from '../support/emulators.ts';
import { putObject } from '../support/streams.ts';

const s3 = makeS3Client();
const sqs = makeSqsClient();

async function subscribed(filter?: { prefix: string }, clients = { s3, sqs }) {
  const { s3, sqs } = clients;
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
async function receive(queueUrl: string, count: number, from: SQSClient = sqs): Promise<string[]> {
  const sqs = from;
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

  describe('with an emulator in this process that accepts two access keys', () => {
    const FIRST = 'AKIAWRITERONE0000001';
    const SECOND = 'AKIAWRITERTWO0000002';
    let emulator: RunningS3Emulator;
    let first: S3Client;
    let second: S3Client;
    let queue: SQSClient;

    const environment = (accessKeyId: string) => ({
      AWS_ENDPOINT_URL_S3: emulator.endpoint,
      AWS_ENDPOINT_URL_SQS: emulator.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: 'local-secret',
    });
    /** The first record of each message. */
    const recordsOf = (bodies: string[]) => bodies.map((body) => JSON.parse(body).Records[0]);

    beforeAll(async () => {
      emulator = await startS3Emulator({ accessKeyId: [FIRST, SECOND] });
      first = makeS3ClientFrom(environment(FIRST));
      second = makeS3ClientFrom(environment(SECOND));
      queue = makeSqsClientFrom(environment(FIRST));
    });

    afterAll(async () => {
      await emulator?.close();
    });

    it("names each write's requester by the access key it was signed with", async () => {
      // Prepare
      const { bucket, queueUrl } = await subscribed(undefined, { s3: first, sqs: queue });
      await receive(queueUrl, 1, queue);
      const presigned = await getSignedUrl(
        second,
        new PutObjectCommand({ Bucket: bucket, Key: 'presigned.txt' }),
        { expiresIn: 60 },
      );
      // Act
      await first.send(new PutObjectCommand({ Bucket: bucket, Key: 'one.txt', Body: '1' }));
      await second.send(new PutObjectCommand({ Bucket: bucket, Key: 'two.txt', Body: '2' }));
      await second.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'one.txt' }));
      expect((await fetch(presigned, { method: 'PUT', body: 'p' })).status).toBe(200);
      expect(
        (await fetch(`${emulator.endpoint}/${bucket}/anonymous.txt`, { method: 'PUT', body: 'a' }))
          .status,
      ).toBe(200);
      // Assess
      const records = recordsOf(await receive(queueUrl, 5, queue));
      const principals = Object.fromEntries(
        records.map((record) => [
          `${record.eventName} ${record.s3.object.key}`,
          record.userIdentity.principalId,
        ]),
      );
      expect(principals).toEqual({
        'ObjectCreated:Put one.txt': `AWS:${FIRST}`,
        'ObjectCreated:Put two.txt': `AWS:${SECOND}`,
        'ObjectRemoved:Delete one.txt': `AWS:${SECOND}`,
        'ObjectCreated:Put presigned.txt': `AWS:${SECOND}`,
        'ObjectCreated:Put anonymous.txt': 'ANONYMOUS',
      });
    });

    it('sends version ids, DeleteMarkerCreated and version deletes as S3 does on a versioned bucket', async () => {
      // Prepare
      const { bucket, queueUrl } = await subscribed(undefined, { s3: first, sqs: queue });
      await receive(queueUrl, 1, queue);
      await first.send(
        new PutBucketVersioningCommand({
          Bucket: bucket,
          VersioningConfiguration: { Status: 'Enabled' },
        }),
      );
      const target = { Bucket: bucket, Key: 'doc.txt' };
      // Act
      const v1 = await first.send(new PutObjectCommand({ ...target, Body: 'one' }));
      const v2 = await first.send(new PutObjectCommand({ ...target, Body: 'two!' }));
      const copied = await first.send(
        new CopyObjectCommand({ ...target, CopySource: `${bucket}/doc.txt` }),
      );
      const created = await first.send(new CreateMultipartUploadCommand(target));
      const part = await first.send(
        new UploadPartCommand({ ...target, UploadId: created.UploadId, PartNumber: 1, Body: 'mp' }),
      );
      const v4 = await first.send(
        new CompleteMultipartUploadCommand({
          ...target,
          UploadId: created.UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
        }),
      );
      await first.send(new DeleteObjectCommand({ ...target, VersionId: v4.VersionId }));
      const marker = await first.send(new DeleteObjectCommand(target));
      await first.send(new DeleteObjectCommand({ ...target, VersionId: marker.VersionId }));
      // Assess
      const records = recordsOf(await receive(queueUrl, 7, queue));
      const sequenced = [...records].sort((a, b) =>
        a.s3.object.sequencer < b.s3.object.sequencer ? -1 : 1,
      );
      expect(
        sequenced.map((record) => [
          record.eventName,
          record.s3.object.versionId,
          record.s3.object.size,
        ]),
      ).toEqual([
        ['ObjectCreated:Put', v1.VersionId, 3],
        ['ObjectCreated:Put', v2.VersionId, 4],
        ['ObjectCreated:Copy', copied.VersionId, 4],
        ['ObjectCreated:CompleteMultipartUpload', v4.VersionId, 2],
        ['ObjectRemoved:Delete', v4.VersionId, undefined],
        ['ObjectRemoved:DeleteMarkerCreated', marker.VersionId, undefined],
        ['ObjectRemoved:Delete', marker.VersionId, undefined],
      ]);
      expect(marker.DeleteMarker).toBe(true);
      const events = sequenced.flatMap(
        (record) => parseS3Notification(JSON.stringify({ Records: [record] })).events,
      );
      expect(events[5]).toMatchObject({ deleteMarker: true, versionId: marker.VersionId });
      expect(new Set(sequenced.map((record) => record.s3.object.sequencer)).size).toBe(7);
    });
  });
});
