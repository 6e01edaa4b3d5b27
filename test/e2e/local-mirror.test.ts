import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalMirror, startLocalMirror } from '../../src/local/mirror.ts';
import type { TaskReport } from '../../src/observe/telemetry.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import { queueDepth } from '../support/emulators.ts';
import { putObject, readAll } from '../support/streams.ts';

let mirror: LocalMirror;
let s3: S3Client;
let blobs: BlobServiceClient;
const reports: TaskReport[] = [];

beforeAll(async () => {
  mirror = await startLocalMirror({ s3Port: 0, azurePort: 0 });
  const { emulators } = mirror;
  // Clients as a user would build them from what `s3az local` prints.
  s3 = new S3Client({
    endpoint: emulators.s3Endpoint,
    forcePathStyle: true,
    region: emulators.region,
    credentials: { accessKeyId: emulators.accessKeyId, secretAccessKey: emulators.secretAccessKey },
  });
  blobs = BlobServiceClient.fromConnectionString(emulators.azureConnectionString);
  mirror.telemetry.onTask((report) => reports.push(report));
}, 60_000);

afterAll(async () => {
  await mirror?.stop();
});

const sha = (bytes: Uint8Array | undefined) =>
  bytes === undefined ? 'absent' : createHash('sha256').update(bytes).digest('hex');

/** Polls `read` until it returns something, or fails after the deadline. */
async function eventually<T>(read: () => Promise<T | undefined>, deadlineMs = 10_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('the condition did not hold before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const readBlob = async (key: string) => {
  try {
    // One GET: downloadToBuffer reads the size first and the body after, so a blob the
    // mirror replaces in between fails it ("Stream drains before getting enough data").
    const out = await blobs.getContainerClient('replicated').getBlockBlobClient(key).download();
    return await readAll(out.readableStreamBody as Readable);
  } catch (error) {
    // The mirror may delete or replace it while it is read: absent is an answer too.
    if ((error as { statusCode?: number }).statusCode === 404) return undefined;
    throw error;
  }
};

const readS3 = async (key: string) => {
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: 'replicated', Key: key }));
    return out.Body?.transformToByteArray();
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
    throw error;
  }
};

/** Waits until the events and tasks queues are empty: nothing is left in flight. */
async function quiet(): Promise<void> {
  const depth = (url: string) => queueDepth(mirror.runtime.sqs, url);
  await eventually(async () => {
    const total =
      (await depth(mirror.runtime.queueUrl('events'))) +
      (await depth(mirror.runtime.queueUrl('tasks')));
    return total === 0 ? true : undefined;
  });
}

const copiesOf = (key: string) =>
  reports.filter(
    (report) =>
      report.result === 'done' &&
      report.outcome.action === 'copied' &&
      report.task?.sourceKey === key,
  ).length;

describe('Local mirror: end to end', () => {
  it("mirrors a file put through S3 into Azure; the webhook skips the replica's own event", async () => {
    const skippedBefore = mirror.telemetry.counters()['skipped.replica'] ?? 0;
    const body = randomBytes(100_000);
    await s3.send(
      new PutObjectCommand({ Bucket: 'replicated', Key: 'from-s3/a b+c.bin', Body: body }),
    );
    expect(sha(await eventually(() => readBlob('from-s3/a b+c.bin')))).toBe(sha(body));
    // The replica's write carried the replicator's client request id, Event Grid reported it,
    // and the webhook skipped the event: no task was planned for it.
    await eventually(async () =>
      (mirror.telemetry.counters()['skipped.replica'] ?? 0) > skippedBefore ? true : undefined,
    );
    await quiet();
    expect(
      reports.filter(
        (report) =>
          report.task?.sourceSide === 'azure' && report.task.sourceKey === 'from-s3/a b+c.bin',
      ),
    ).toEqual([]);
  });

  it('mirrors a blob put through Azure into S3, once', async () => {
    const body = randomBytes(50_000);
    await blobs
      .getContainerClient('replicated')
      .getBlockBlobClient('from-azure/x.bin')
      .upload(body, body.length);
    expect(sha(await eventually(() => readS3('from-azure/x.bin')))).toBe(sha(body));
    // The replica's own event comes back and is recognised, not copied again.
    await eventually(async () =>
      (mirror.telemetry.counters()['skipped.replica'] ?? 0) >= 2 ? true : undefined,
    );
    expect(mirror.telemetry.counters().copied).toBe(2);
  });

  it('mirrors large multipart objects both ways', async () => {
    const fromS3 = randomBytes(20 * 1024 * 1024 + 5);
    const fromAzure = randomBytes(18 * 1024 * 1024 + 7);
    await putObject(new S3ObjectStore(s3, 'replicated'), 'large/from-s3.bin', fromS3);
    await blobs
      .getContainerClient('replicated')
      .getBlockBlobClient('large/from-azure.bin')
      .uploadData(fromAzure, { blockSize: 4 * 1024 * 1024, maxSingleShotSize: 4 * 1024 * 1024 });
    expect(sha(await eventually(() => readBlob('large/from-s3.bin'), 30_000))).toBe(sha(fromS3));
    expect(sha(await eventually(() => readS3('large/from-azure.bin'), 30_000))).toBe(
      sha(fromAzure),
    );
  });

  it('mirrors an overwrite and a delete, from either side', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'replicated', Key: 'ow.txt', Body: 'one' }));
    await eventually(async () =>
      (await readBlob('ow.txt'))?.toString() === 'one' ? true : undefined,
    );
    await s3.send(new PutObjectCommand({ Bucket: 'replicated', Key: 'ow.txt', Body: 'two' }));
    await eventually(async () =>
      (await readBlob('ow.txt'))?.toString() === 'two' ? true : undefined,
    );
    await s3.send(new DeleteObjectCommand({ Bucket: 'replicated', Key: 'ow.txt' }));
    await eventually(async () => ((await readBlob('ow.txt')) === undefined ? true : undefined));

    const blob = blobs.getContainerClient('replicated').getBlockBlobClient('del-az.txt');
    await blob.upload('x', 1);
    await eventually(() => readS3('del-az.txt'));
    await blob.delete();
    await eventually(async () => ((await readS3('del-az.txt')) === undefined ? true : undefined));
  });

  it('mirrors an ADLS Gen2 rename announced by Event Grid as a copy and a delete', async () => {
    const container = blobs.getContainerClient('replicated');
    await container.getBlockBlobClient('ren/old.txt').upload('renamed', 7);
    await eventually(() => readS3('ren/old.txt'));
    // The rename itself happens on the account (straight to Azurite, so no BlobCreated is
    // published for it); ADLS Gen2 announces it as one BlobRenamed event.
    const direct = BlobServiceClient.fromConnectionString(
      mirror.emulators.azureConnectionString.replace(
        mirror.emulators.azureAccountUrl,
        mirror.emulators.azuriteAccountUrl,
      ),
    ).getContainerClient('replicated');
    await direct.getBlockBlobClient('ren/new.txt').upload('renamed', 7);
    await direct.getBlockBlobClient('ren/old.txt').delete();
    const response = await fetch(mirror.webhookUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-s3az-secret': mirror.webhookSecret },
      body: JSON.stringify([
        {
          topic:
            '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1',
          subject: '/blobServices/default/containers/replicated/blobs/ren/new.txt',
          eventType: 'Microsoft.Storage.BlobRenamed',
          id: 'rename-1',
          eventTime: new Date().toISOString(),
          dataVersion: '',
          metadataVersion: '1',
          data: {
            api: 'RenameFile',
            sourceUrl: `${mirror.emulators.azureAccountUrl}/replicated/ren/old.txt`,
            destinationUrl: `${mirror.emulators.azureAccountUrl}/replicated/ren/new.txt`,
            sequencer: '0000000000000000000000000000ffff0000000000000001',
          },
        },
      ]),
    });
    expect(response.status).toBe(200);
    expect(Buffer.from(await eventually(() => readS3('ren/new.txt'))).toString()).toBe('renamed');
    await eventually(async () => ((await readS3('ren/old.txt')) === undefined ? true : undefined));
  });

  it('mirrors a burst of 200 small objects', async () => {
    const keys = Array.from({ length: 200 }, (_, i) => `burst/${String(i).padStart(3, '0')}.txt`);
    for (let i = 0; i < keys.length; i += 20) {
      await Promise.all(
        keys
          .slice(i, i + 20)
          .map((key) =>
            s3.send(new PutObjectCommand({ Bucket: 'replicated', Key: key, Body: key })),
          ),
      );
    }
    const container = blobs.getContainerClient('replicated');
    await eventually(async () => {
      let count = 0;
      for await (const _ of container.listBlobsFlat({ prefix: 'burst/' })) count += 1;
      return count === keys.length ? true : undefined;
    }, 60_000);
    expect(
      (await container.getBlockBlobClient('burst/123.txt').downloadToBuffer()).toString(),
    ).toBe('burst/123.txt');
  });

  it('ends equal on both sides when the same key is written on both at once, without ping-pong', async () => {
    const key = 'race.txt';
    await Promise.all([
      s3.send(new PutObjectCommand({ Bucket: 'replicated', Key: key, Body: 'from s3' })),
      blobs.getContainerClient('replicated').getBlockBlobClient(key).upload('from azure', 10),
    ]);
    const settled = await eventually(async () => {
      const [a, b] = await Promise.all([readS3(key), readBlob(key)]);
      return a !== undefined && b !== undefined && sha(a) === sha(b)
        ? Buffer.from(a).toString()
        : undefined;
    }, 15_000);
    expect(['from s3', 'from azure']).toContain(settled);
    await quiet();
    const history = () =>
      JSON.stringify(
        reports
          .filter((report) => report.task?.sourceKey === key)
          .map((report) => [
            report.task?.sourceSide,
            report.result === 'done' ? report.outcome : report.result,
          ]),
      );
    // Each side's write is copied at most once, and once the queues are empty both sides
    // hold the same bytes.
    expect(copiesOf(key), history()).toBeLessThanOrEqual(2);
    const [a, b] = await Promise.all([readS3(key), readBlob(key)]);
    expect(sha(a), history()).toBe(sha(b));
  });
});
