import { createHash, randomBytes } from 'node:crypto';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { createCopyHandler } from '../../handlers/copy.ts';
import { createPlanHandler } from '../../handlers/plan.ts';
import { QueueRunner, recordOf } from '../../src/local/queue-runner.ts';
import type { TaskReport } from '../../src/observe/telemetry.ts';
import { INLINE_COPY_BYTES } from '../../src/queue/plan-batch.ts';
import { COPY_STOP_MARGIN_SECONDS } from '../../src/queue/timing.ts';
import { emulatorEnv, makeS3Client } from '../support/emulators.ts';
import {
  blobEvent,
  nextAzureSequencer,
  nextS3Sequencer,
  s3Notification,
  s3Record,
} from '../support/notifications.ts';
import { type Pipeline, startPipeline } from '../support/pipeline.ts';
import { putObject, readAll } from '../support/streams.ts';

const s3 = makeS3Client();

/** A digest to compare contents by: equality of large buffers is slow to check and to print. */
const sha = (bytes: Buffer | undefined) =>
  bytes === undefined ? 'absent' : createHash('sha256').update(bytes).digest('hex');

/** The pipeline's one rule. */
function ruleOf(pipeline: Pipeline) {
  const rule = pipeline.runtime.config.rules[0];
  if (!rule) throw new Error('no rule');
  return rule;
}

/** Event Grid's BlobCreated for `key` in the pipeline's container. */
const blobCreatedIn = (pipeline: Pipeline, key: string, blob: Parameters<typeof blobEvent>[4]) =>
  blobEvent(
    'Microsoft.Storage.BlobCreated',
    ruleOf(pipeline).azure.accountUrl,
    pipeline.container.containerName,
    key,
    blob,
  );

async function putS3(pipeline: Pipeline, key: string, body: Buffer) {
  // Bodies over the emulator's request cap go up as a multipart upload, as a user's tool would.
  await putObject((await pipeline.runtime.storesOf(ruleOf(pipeline))).s3, key, body);
  const head = await s3.send(new HeadObjectCommand({ Bucket: pipeline.bucket, Key: key }));
  return { etag: head.ETag ?? '', size: body.length, sequencer: nextS3Sequencer() };
}

async function readS3(pipeline: Pipeline, key: string): Promise<Buffer | undefined> {
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: pipeline.bucket, Key: key }));
    return Buffer.from(
      await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
    throw error;
  }
}

async function readBlob(pipeline: Pipeline, key: string): Promise<Buffer | undefined> {
  const azure = (await pipeline.runtime.storesOf(ruleOf(pipeline))).azure;
  if (!(await azure.head(key))) return undefined;
  return readAll((await azure.get(key)).body);
}

async function putBlob(pipeline: Pipeline, key: string, body: Buffer) {
  const out = await pipeline.container.getBlockBlobClient(key).upload(body, body.length);
  return { etag: out.etag ?? '', size: body.length, sequencer: nextAzureSequencer() };
}

/** Delivers Event Grid events through the real webhook handler, authenticated. */
async function deliver(pipeline: Pipeline, events: unknown[]) {
  const response = await pipeline.webhook({
    headers: { 'x-s3az-secret': pipeline.webhookSecret, 'aeg-event-type': 'Notification' },
    body: JSON.stringify(events),
  });
  expect(response.statusCode).toBe(200);
}

const skips = (reports: TaskReport[]) =>
  reports.flatMap((report) =>
    report.result === 'done' && report.outcome.action === 'skipped' ? [report.outcome.reason] : [],
  );

describe('Pipeline: S3 to Azure', () => {
  it("copies an object put in S3 to Azure, and the replica's own event does not copy back", async () => {
    const pipeline = await startPipeline();
    const key = 'dir/a b+c.txt';
    const body = randomBytes(70_000);
    const put = await putS3(pipeline, key, body);
    await pipeline.sendEvent(
      s3Notification(s3Record('ObjectCreated:Put', pipeline.bucket, key, put)),
    );
    await pipeline.settle();
    expect(sha(await readBlob(pipeline, key))).toBe(sha(body));
    expect(pipeline.copies()).toBe(1);

    // Azure announces the replica the replicator wrote, in an event without the writer's
    // client request id: the marker (this key, this content) shows it is ours.
    const replica = await pipeline.container.getBlockBlobClient(key).getProperties();
    await deliver(pipeline, [
      blobCreatedIn(pipeline, key, {
        etag: replica.etag ?? '',
        size: body.length,
        sequencer: nextAzureSequencer(),
        api: 'PutBlockList',
        clientRequestId: null,
      }),
    ]);
    await pipeline.settle();
    expect(pipeline.copies()).toBe(1);
    expect(skips(pipeline.reports)).toEqual(['replica']);
    expect(sha(await readS3(pipeline, key))).toBe(sha(body));
  });

  it('ends with the newest version on both sides when events are duplicated and reordered', async () => {
    const pipeline = await startPipeline();
    const key = 'reordered.bin';
    const first = randomBytes(10_000);
    const second = randomBytes(12_000);
    const v1 = await putS3(pipeline, key, first);
    const v2 = await putS3(pipeline, key, second);
    const event = (version: typeof v1) =>
      s3Notification(s3Record('ObjectCreated:Put', pipeline.bucket, key, version));
    // Newest first, then the older one, then both again.
    await pipeline.sendEvent(event(v2));
    await pipeline.sendEvent(event(v1));
    await pipeline.sendEvent(event(v2));
    await pipeline.sendEvent(event(v1));
    await pipeline.settle();
    expect(sha(await readBlob(pipeline, key))).toBe(sha(second));
    expect(sha(await readS3(pipeline, key))).toBe(sha(second));
    // One change, one copy: the other deliveries found the replica up to date.
    expect(pipeline.copies()).toBe(1);
    for (const reason of skips(pipeline.reports)) expect(reason).toBe('up-to-date');
  });

  it('copies a multipart-sized object in parts', async () => {
    const pipeline = await startPipeline();
    const key = 'large/object.bin';
    const body = randomBytes(12 * 1024 * 1024 + 3);
    const put = await putS3(pipeline, key, body);
    await pipeline.sendEvent(
      s3Notification(s3Record('ObjectCreated:CompleteMultipartUpload', pipeline.bucket, key, put)),
    );
    await pipeline.settle();
    expect(sha(await readBlob(pipeline, key))).toBe(sha(body));
  });
});

describe('Pipeline: Azure to S3 through the webhook', () => {
  it('copies a blob put in Azure to S3', async () => {
    const pipeline = await startPipeline();
    const key = 'from azure/ü.txt';
    const body = randomBytes(40_000);
    const put = await putBlob(pipeline, key, body);
    await deliver(pipeline, [blobCreatedIn(pipeline, key, put)]);
    await pipeline.settle();
    expect(sha(await readS3(pipeline, key))).toBe(sha(body));
    const head = await s3.send(new HeadObjectCommand({ Bucket: pipeline.bucket, Key: key }));
    expect(head.Metadata?.s3az_origin).toBe('azure');
    expect(pipeline.copies()).toBe(1);
  });
});

describe('Pipeline: deletes', () => {
  const replicate = async (pipeline: Pipeline, key: string) => {
    const put = await putS3(pipeline, key, randomBytes(1000));
    await pipeline.sendEvent(
      s3Notification(s3Record('ObjectCreated:Put', pipeline.bucket, key, put)),
    );
    await pipeline.settle();
    expect(await readBlob(pipeline, key)).toBeDefined();
  };
  const deleteS3 = async (pipeline: Pipeline, key: string) => {
    await s3.send(new DeleteObjectCommand({ Bucket: pipeline.bucket, Key: key }));
    await pipeline.sendEvent(
      s3Notification(
        s3Record('ObjectRemoved:Delete', pipeline.bucket, key, { sequencer: nextS3Sequencer() }),
      ),
    );
    await pipeline.settle();
  };

  it('mirrors a delete when the rule says so and the destination is still the replica', async () => {
    const pipeline = await startPipeline({ rule: { deletes: 'mirror' } });
    await replicate(pipeline, 'gone.txt');
    await deleteS3(pipeline, 'gone.txt');
    expect(await readBlob(pipeline, 'gone.txt')).toBeUndefined();
  });

  it("ends with a user's write on both sides when it races a delete on the other side", async () => {
    const pipeline = await startPipeline({ rule: { deletes: 'mirror' } });
    await replicate(pipeline, 'kept.txt');
    const mine = Buffer.from('written in Azure by a user');
    const put = await putBlob(pipeline, 'kept.txt', mine);
    await s3.send(new DeleteObjectCommand({ Bucket: pipeline.bucket, Key: 'kept.txt' }));
    // Both events, the delete's first: the delete cannot tell whether the rewrite (in its
    // second) came before it, and waits; the rewrite's own event carries it across meanwhile.
    await pipeline.sendEvent(
      s3Notification(
        s3Record('ObjectRemoved:Delete', pipeline.bucket, 'kept.txt', {
          sequencer: nextS3Sequencer(),
        }),
      ),
    );
    await deliver(pipeline, [blobCreatedIn(pipeline, 'kept.txt', put)]);
    await pipeline.settle();
    expect(sha(await readBlob(pipeline, 'kept.txt'))).toBe(sha(mine));
    expect(sha(await readS3(pipeline, 'kept.txt'))).toBe(sha(mine));
  });

  it('deletes an S3 multipart original when a user deletes its Azure replica, after a hold', async () => {
    const pipeline = await startPipeline({ rule: { deletes: 'mirror' } });
    const key = 'multipart.bin';
    // S3 dates a multipart object from its upload's start, so its date cannot show that it
    // was there before the delete: the delete waits for an event that never comes, then goes.
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: pipeline.bucket, Key: key }),
    );
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(1000)];
    const etags = [];
    for (const [index, part] of parts.entries()) {
      const out = await s3.send(
        new UploadPartCommand({
          Bucket: pipeline.bucket,
          Key: key,
          UploadId,
          PartNumber: index + 1,
          Body: part,
        }),
      );
      etags.push({ PartNumber: index + 1, ETag: out.ETag ?? '' });
    }
    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: pipeline.bucket,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: etags },
      }),
    );
    expect(done.ETag).toMatch(/-2"$/);
    await pipeline.sendEvent(
      s3Notification(
        s3Record('ObjectCreated:CompleteMultipartUpload', pipeline.bucket, key, {
          etag: done.ETag ?? '',
          size: Buffer.concat(parts).length,
          sequencer: nextS3Sequencer(),
        }),
      ),
    );
    await pipeline.settle();
    expect(sha(await readBlob(pipeline, key))).toBe(sha(Buffer.concat(parts)));

    await pipeline.container.getBlockBlobClient(key).delete();
    await deliver(pipeline, [
      blobEvent(
        'Microsoft.Storage.BlobDeleted',
        ruleOf(pipeline).azure.accountUrl,
        pipeline.container.containerName,
        key,
        { sequencer: nextAzureSequencer(), clientRequestId: null },
      ),
    ]);
    await pipeline.settle();
    expect(await readS3(pipeline, key)).toBeUndefined();
    expect(
      pipeline.reports.some(
        (report) =>
          report.result === 'continued' &&
          /may have been written after the delete/.test(report.detail),
      ),
    ).toBe(true);
  });

  it('does not mirror deletes by default', async () => {
    const pipeline = await startPipeline();
    await replicate(pipeline, 'stays.txt');
    await deleteS3(pipeline, 'stays.txt');
    expect(await readBlob(pipeline, 'stays.txt')).toBeDefined();
    expect(skips(pipeline.reports)).toEqual(['excluded']);
  });
});

describe('Pipeline: failures', () => {
  it('dead-letters a task that keeps failing, with its reason, after the configured receives', async () => {
    // Nothing listens on port 1: every read of S3 fails with a retryable network error.
    const pipeline = await startPipeline({
      env: { AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:1' },
      maxReceives: 3,
    });
    await pipeline.sendEvent(
      s3Notification(
        s3Record('ObjectCreated:Put', pipeline.bucket, 'poison.txt', {
          etag: '"abc"',
          size: 3,
          sequencer: nextS3Sequencer(),
        }),
      ),
    );
    await pipeline.settle(60_000);
    const [dead] = await pipeline.peek(pipeline.queues.tasksDeadLetter);
    expect(JSON.parse(dead?.Body ?? '{}').sourceKey).toBe('poison.txt');
    expect(dead?.MessageAttributes?.reason?.StringValue).toBe('retries-exhausted');
    expect(dead?.MessageAttributes?.receiveCount?.StringValue).toBe('3');
    expect(dead?.MessageAttributes?.error?.StringValue).toMatch(/^retryable: /);
    expect(dead?.MessageAttributes?.sourceQueue?.StringValue).toBe(pipeline.queues.tasks);
    const failures = pipeline.reports.filter((report) => report.result === 'failed');
    expect(failures.map((report) => report.result === 'failed' && report.deadLettered)).toEqual([
      false,
      false,
      true,
    ]);
  });

  it('dead-letters a permanent failure on the first receive', async () => {
    const wrongKey = randomBytes(64).toString('base64');
    const pipeline = await startPipeline({
      rule: { azure: { credential: { connectionStringEnv: 'S3AZ_TEST_WRONG_AZURE' } } },
      env: {
        S3AZ_TEST_WRONG_AZURE: `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${wrongKey}`,
      },
    });
    const put = await putS3(pipeline, 'denied.txt', Buffer.from('x'));
    await pipeline.sendEvent(
      s3Notification(s3Record('ObjectCreated:Put', pipeline.bucket, 'denied.txt', put)),
    );
    await pipeline.settle();
    const [dead] = await pipeline.peek(pipeline.queues.tasksDeadLetter);
    expect(dead?.MessageAttributes?.reason?.StringValue).toBe('permanent');
    expect(dead?.MessageAttributes?.receiveCount?.StringValue).toBe('1');
    expect(dead?.MessageAttributes?.error?.StringValue ?? '').not.toContain(wrongKey);
    expect(pipeline.reports).toHaveLength(1);
  });

  it("skips the event of the replicator's own S3 write by its principal, reading neither store", async () => {
    // The destination is unreadable (wrong key): reading it would dead-letter the task.
    const wrongKey = randomBytes(64).toString('base64');
    const pipeline = await startPipeline({
      rule: { azure: { credential: { connectionStringEnv: 'S3AZ_TEST_WRONG_AZURE' } } },
      env: {
        S3AZ_TEST_WRONG_AZURE: `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${wrongKey}`,
      },
    });
    await pipeline.sendEvent(
      s3Notification(
        s3Record(
          'ObjectCreated:Put',
          pipeline.bucket,
          'not-even-there.txt',
          { etag: '"0x1"', size: 7, sequencer: nextS3Sequencer() },
          `AWS:${emulatorEnv().replicatorAccessKeyId}`,
        ),
      ),
    );
    await pipeline.settle();
    expect(pipeline.reports).toEqual([]);
    expect(pipeline.runtime.telemetry.counters()['skipped.replica']).toBe(1);
    expect(await pipeline.peek(pipeline.queues.tasksDeadLetter)).toEqual([]);
  });

  it('skips a replica by its marker when the event names no writer (EventBridge)', async () => {
    const pipeline = await startPipeline();
    // A replica of an Azure blob, with an earlier version's marker (no rule or key named).
    const out = await s3.send(
      new PutObjectCommand({
        Bucket: pipeline.bucket,
        Key: 'echo.txt',
        Body: 'replica',
        Metadata: {
          s3az_origin: 'azure',
          s3az_source_etag: '"0x1"',
          s3az_source_last_modified: new Date().toISOString(),
        },
      }),
    );
    await pipeline.sendEvent(
      s3Notification(
        s3Record(
          'ObjectCreated:Put',
          pipeline.bucket,
          'echo.txt',
          { etag: out.ETag ?? '', size: 7, sequencer: nextS3Sequencer() },
          null,
        ),
      ),
    );
    await pipeline.settle();
    expect(skips(pipeline.reports)).toEqual(['replica']);
    expect(pipeline.copies()).toBe(0);
  });

  it('dead-letters an event that does not parse, with the reason', async () => {
    const pipeline = await startPipeline();
    await pipeline.sendEvent('{"Records": "not a list"}');
    await pipeline.settle();
    const [dead] = await pipeline.peek(pipeline.queues.eventsDeadLetter);
    expect(dead?.Body).toBe('{"Records": "not a list"}');
    expect(dead?.MessageAttributes?.reason?.StringValue).toBe('malformed-event');
    expect(dead?.MessageAttributes?.error?.StringValue).toMatch(/Records/);
  });

  it('continues a copy that reaches its time budget in a new invocation', async () => {
    const pipeline = await startPipeline();
    const body = randomBytes(11 * 1024 * 1024);
    const put = await putS3(pipeline, 'budget.bin', body);
    await pipeline.sendEvent(
      s3Notification(s3Record('ObjectCreated:Put', pipeline.bucket, 'budget.bin', put)),
    );
    expect(await pipeline.runners.plan.pollOnce(5)).toBe(1);
    // An invocation with no time left beyond the stop margin stops at once and continues.
    const late = new QueueRunner({
      sqs: pipeline.sqs,
      queueUrl: pipeline.queues.tasks,
      handler: createCopyHandler(() => Promise.resolve(pipeline.runtime)),
      functionName: 'copy',
      batchSize: 1,
      timeoutSeconds: COPY_STOP_MARGIN_SECONDS,
    });
    expect(await late.pollOnce(5)).toBe(1);
    expect(pipeline.reports.map((report) => report.result)).toEqual(['continued']);
    await pipeline.settle();
    expect(pipeline.reports.map((report) => report.result)).toEqual(['continued', 'done']);
    expect(sha(await readBlob(pipeline, 'budget.bin'))).toBe(sha(body));
    expect(await pipeline.peek(pipeline.queues.tasksDeadLetter)).toEqual([]);
  });
});

describe('Pipeline: the plan step', () => {
  it('retries only the record that failed, and plans the rest of the batch', async () => {
    const pipeline = await startPipeline({
      // A second rule whose Azure credential is missing: listing its directory fails.
      extraRules: ({ bucket, accountUrl }) => [
        {
          name: 'broken',
          s3: { bucket, prefix: 'broken/' },
          azure: {
            accountUrl,
            container: 'other-container',
            credential: { connectionStringEnv: 'S3AZ_TEST_UNSET' },
          },
        },
      ],
      rule: { s3: { prefix: 'ok/' } },
    });
    const accountUrl = ruleOf(pipeline).azure.accountUrl;
    await pipeline.sendEvent(
      s3Notification(
        // Over the size the plan step copies itself: its task goes to the tasks queue.
        s3Record('ObjectCreated:Put', pipeline.bucket, 'ok/one.txt', {
          etag: '"e1"',
          size: INLINE_COPY_BYTES + 1,
          sequencer: nextS3Sequencer(),
        }),
      ),
    );
    const renamed = {
      ...blobEvent('Microsoft.Storage.BlobCreated', accountUrl, 'other-container', 'x', {
        sequencer: nextAzureSequencer(),
      }),
      eventType: 'Microsoft.Storage.DirectoryRenamed',
    };
    renamed.data = {
      ...renamed.data,
      api: 'RenameDirectory',
      destinationUrl: `${accountUrl}/other-container/new`,
      sourceUrl: `${accountUrl}/other-container/old`,
    } as typeof renamed.data;
    await pipeline.sendEvent(JSON.stringify(renamed));
    const received = await pipeline.peek(pipeline.queues.events);
    expect(received).toHaveLength(2);
    const handler = createPlanHandler(() => Promise.resolve(pipeline.runtime));
    const response = await handler({
      Records: received.map((message) =>
        recordOf(message, 'arn:aws:sqs:us-east-1:0:events', 'us-east-1'),
      ),
    });
    const failedId = received.find((message) =>
      message.Body?.includes('DirectoryRenamed'),
    )?.MessageId;
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: failedId }]);
    const [task] = await pipeline.peek(pipeline.queues.tasks);
    expect(JSON.parse(task?.Body ?? '{}')).toMatchObject({
      rule: 'mirror',
      sourceKey: 'ok/one.txt',
    });
  });

  it('expands an ADLS Gen2 directory rename into a copy per object and deletes of the old replicas', async () => {
    const pipeline = await startPipeline({ rule: { deletes: 'mirror' } });
    const accountUrl = ruleOf(pipeline).azure.accountUrl;
    const container = pipeline.container.containerName;
    const files = ['a.txt', 'sub/b.txt'];
    for (const file of files) {
      const put = await putBlob(pipeline, `old/${file}`, Buffer.from(file));
      await deliver(pipeline, [blobCreatedIn(pipeline, `old/${file}`, put)]);
    }
    await pipeline.settle();
    expect(sha(await readS3(pipeline, 'old/sub/b.txt'))).toBe(sha(Buffer.from('sub/b.txt')));
    // The rename, as ADLS Gen2 does it: the old names are gone, the new ones exist.
    for (const file of files) {
      await putBlob(pipeline, `new/${file}`, Buffer.from(file));
      await pipeline.container.getBlockBlobClient(`old/${file}`).delete();
    }
    const renamed = {
      ...blobCreatedIn(pipeline, 'new', {
        sequencer: nextAzureSequencer(),
      }),
      eventType: 'Microsoft.Storage.DirectoryRenamed',
    };
    renamed.data = {
      ...renamed.data,
      api: 'RenameDirectory',
      destinationUrl: `${accountUrl}/${container}/new`,
      sourceUrl: `${accountUrl}/${container}/old`,
    } as typeof renamed.data;
    await deliver(pipeline, [renamed]);
    await pipeline.settle();
    for (const file of files) {
      expect(sha(await readS3(pipeline, `new/${file}`))).toBe(sha(Buffer.from(file)));
      expect(await readS3(pipeline, `old/${file}`)).toBeUndefined();
    }
  });
});

describe("Pipeline: the directory that is the rule's prefix", () => {
  it("routes a delete of the prefix's own directory (landing for landing/) and deletes its replicas", async () => {
    const pipeline = await startPipeline({
      rule: { deletes: 'mirror', azure: { prefix: 'landing/' }, s3: { prefix: 'in/' } },
    });
    const accountUrl = ruleOf(pipeline).azure.accountUrl;
    const container = pipeline.container.containerName;
    for (const file of ['a.txt', 'sub/b.txt']) {
      const put = await putBlob(pipeline, `landing/${file}`, Buffer.from(file));
      await deliver(pipeline, [blobCreatedIn(pipeline, `landing/${file}`, put)]);
    }
    await pipeline.settle();
    expect(sha(await readS3(pipeline, 'in/sub/b.txt'))).toBe(sha(Buffer.from('sub/b.txt')));
    for (const file of ['a.txt', 'sub/b.txt']) {
      await pipeline.container.getBlockBlobClient(`landing/${file}`).delete();
    }
    const deleted = {
      ...blobCreatedIn(pipeline, 'landing', { sequencer: nextAzureSequencer() }),
      eventType: 'Microsoft.Storage.DirectoryDeleted',
    };
    deleted.data = {
      ...deleted.data,
      api: 'DeleteDirectory',
      url: `${accountUrl}/${container}/landing`,
    } as typeof deleted.data;
    await deliver(pipeline, [deleted]);
    await pipeline.settle();
    expect(await readS3(pipeline, 'in/a.txt')).toBeUndefined();
    expect(await readS3(pipeline, 'in/sub/b.txt')).toBeUndefined();
  });
});

describe('Pipeline: the Event Grid webhook', () => {
  const created = (pipeline: Pipeline) => [
    blobCreatedIn(pipeline, 'k.txt', { etag: '"0x1"', size: 1, sequencer: nextAzureSequencer() }),
  ];

  it('answers 401 to a forged or unauthenticated delivery and stores nothing', async () => {
    const pipeline = await startPipeline();
    const body = JSON.stringify(created(pipeline));
    const forged = await pipeline.webhook({ headers: { 'x-s3az-secret': 'guess' }, body });
    const bare = await pipeline.webhook({ body });
    const forgedQuery = await pipeline.webhook({ query: { code: 'guess' }, body });
    for (const response of [forged, bare, forgedQuery]) {
      expect(response.statusCode).toBe(401);
      expect(response.body).not.toContain(pipeline.webhookSecret);
    }
    expect(await pipeline.peek(pipeline.queues.events)).toEqual([]);
    // The genuine delivery is stored, one message per event.
    const genuine = await pipeline.webhook({ query: { code: pipeline.webhookSecret }, body });
    expect(genuine.statusCode).toBe(200);
    expect(await pipeline.peek(pipeline.queues.events)).toHaveLength(1);
  });

  it('answers both handshakes', async () => {
    const pipeline = await startPipeline();
    const validation = await pipeline.webhook({
      headers: {
        'x-s3az-secret': pipeline.webhookSecret,
        'aeg-event-type': 'SubscriptionValidation',
      },
      body: JSON.stringify([
        {
          id: 'v1',
          topic: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a',
          subject: '',
          eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
          eventTime: new Date().toISOString(),
          data: { validationCode: 'CODE-123', validationUrl: 'https://example.invalid/validate' },
          dataVersion: '2',
          metadataVersion: '1',
        },
      ]),
    });
    expect(validation.statusCode).toBe(200);
    expect(JSON.parse(validation.body)).toEqual({ validationResponse: 'CODE-123' });
    const options = await pipeline.webhook({
      method: 'OPTIONS',
      headers: { 'webhook-request-origin': 'eventgrid.azure.net' },
    });
    expect(options.statusCode).toBe(200);
    expect(options.headers['webhook-allowed-origin']).toBe('eventgrid.azure.net');
    expect(await pipeline.peek(pipeline.queues.events)).toEqual([]);
  });

  it('answers 413 to a 2 MiB body and stores nothing', async () => {
    const pipeline = await startPipeline();
    const events = created(pipeline);
    const body = JSON.stringify([{ ...events[0], padding: 'x'.repeat(2 * 1024 * 1024) }]);
    const response = await pipeline.webhook({
      headers: { 'x-s3az-secret': pipeline.webhookSecret },
      body,
    });
    expect(response.statusCode).toBe(413);
    expect(await pipeline.peek(pipeline.queues.events)).toEqual([]);
  });

  it('stores the good events of a delivery and dead-letters a malformed one with its reason', async () => {
    const pipeline = await startPipeline();
    const bad = { eventType: 'Microsoft.Storage.BlobCreated' };
    const response = await pipeline.webhook({
      headers: { 'x-s3az-secret': pipeline.webhookSecret },
      body: JSON.stringify([bad, ...created(pipeline)]),
    });
    expect(response.statusCode).toBe(200);
    expect(await pipeline.peek(pipeline.queues.events)).toHaveLength(1);
    const [dead] = await pipeline.peek(pipeline.queues.eventsDeadLetter);
    expect(dead?.Body).toBe(JSON.stringify(bad));
    expect(dead?.MessageAttributes?.reason?.StringValue).toBe('malformed-event');
    expect(dead?.MessageAttributes?.error?.StringValue).toMatch(/id|data/);
    expect(dead?.MessageAttributes?.sourceQueue?.StringValue).toBe(pipeline.queues.events);
  });

  it('answers 400 to a body that is not an array of events or an event', async () => {
    const pipeline = await startPipeline();
    const response = await pipeline.webhook({
      headers: { 'x-s3az-secret': pipeline.webhookSecret },
      body: '"Microsoft.Storage.BlobCreated"',
    });
    expect(response.statusCode).toBe(400);
    expect(await pipeline.peek(pipeline.queues.events)).toEqual([]);
  });
});
