import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalMirror, startLocalMirror } from '../../src/local/mirror.ts';
import type { TaskReport } from '../../src/observe/telemetry.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import { rcloneEnvironment, rcloneVersion } from '../bench/rclone.ts';
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
  it("mirrors a file put through S3 into Azure; the replica's own event is not delivered", async () => {
    const skippedBefore = mirror.telemetry.counters()['skipped.replica'] ?? 0;
    const body = randomBytes(100_000);
    await s3.send(
      new PutObjectCommand({ Bucket: 'replicated', Key: 'from-s3/a b+c.bin', Body: body }),
    );
    expect(sha(await eventually(() => readBlob('from-s3/a b+c.bin')))).toBe(sha(body));
    // The replica's write carried the replicator's client request id, and the subscription's
    // filter (as `s3az setup azure` makes it) left its event out: the webhook never saw it
    // (it would have counted a skipped replica), and no task was planned for it.
    await eventually(async () =>
      (await mirror.emulators.eventGridPending()) === 0 ? true : undefined,
    );
    await quiet();
    expect(mirror.telemetry.counters()['skipped.replica'] ?? 0).toBe(skippedBefore);
    expect(
      reports.filter(
        (report) =>
          report.task?.sourceSide === 'azure' && report.task.sourceKey === 'from-s3/a b+c.bin',
      ),
    ).toEqual([]);
  });

  it('mirrors a blob put through Azure into S3, once', async () => {
    const skippedBefore = mirror.telemetry.counters()['skipped.replica'] ?? 0;
    const body = randomBytes(50_000);
    await blobs
      .getContainerClient('replicated')
      .getBlockBlobClient('from-azure/x.bin')
      .upload(body, body.length);
    expect(sha(await eventually(() => readS3('from-azure/x.bin')))).toBe(sha(body));
    // The replica's own event comes back and is recognised, not copied again.
    await eventually(async () =>
      (mirror.telemetry.counters()['skipped.replica'] ?? 0) > skippedBefore ? true : undefined,
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

/**
 * Waits until a delete now would certainly come after `time`: stores date writes in whole
 * seconds, and a write less than a whole second before a delete is kept as possibly racing it.
 */
async function untilADeleteWouldFollow(time: Date | undefined): Promise<void> {
  const next = (Math.floor((time ?? new Date()).getTime() / 1000) + 2) * 1000;
  await eventually(async () => (Date.now() >= next ? true : undefined), 3_000);
}

const container = () => blobs.getContainerClient('replicated');
/** The container straight on Azurite: changes made here publish no event. */
const direct = () =>
  BlobServiceClient.fromConnectionString(
    mirror.emulators.azureConnectionString.replace(
      mirror.emulators.azureAccountUrl,
      mirror.emulators.azuriteAccountUrl,
    ),
  ).getContainerClient('replicated');
const TOPIC =
  '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1';
/** Delivers Event Grid events to the mirror's webhook as Event Grid would. */
async function postEvents(events: unknown[]): Promise<void> {
  const response = await fetch(mirror.webhookUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-s3az-secret': mirror.webhookSecret },
    body: JSON.stringify(events),
  });
  expect(response.status).toBe(200);
}
const text = (bytes: Uint8Array | undefined) =>
  bytes === undefined ? undefined : Buffer.from(bytes).toString();
const untilS3Is = (key: string, want: string | undefined, deadlineMs?: number) =>
  eventually(
    async () => ((text(await readS3(key)) ?? null) === (want ?? null) ? true : undefined),
    deadlineMs,
  );
const untilBlobIs = (key: string, want: string | undefined, deadlineMs?: number) =>
  eventually(
    async () => ((text(await readBlob(key)) ?? null) === (want ?? null) ? true : undefined),
    deadlineMs,
  );

/** A user's file tool: writes a file with a modification time, reads the time back. */
interface FileTool {
  write(remote: 's3' | 'az', key: string, body: string, mtime: Date): Promise<void>;
  /** The modification time the tool reports, ISO 8601 to the millisecond. */
  modTime(remote: 's3' | 'az', key: string): Promise<string>;
}

/** rclone itself, with remotes `s3:` and `az:` on the mirror's emulators. */
function rcloneTool(): FileTool {
  const dir = mkdtempSync(join(tmpdir(), 's3az-rclone-'));
  const env = rcloneEnvironment({ ...mirror.emulators, container: 'replicated' }, dir);
  const path = (remote: 's3' | 'az', key: string) =>
    remote === 's3' ? `s3:replicated/${key}` : `az:replicated/${key}`;
  const rclone = (...args: string[]) =>
    execFileSync('rclone', args, { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  return {
    async write(remote, key, body, mtime) {
      const file = join(dir, 'upload');
      writeFileSync(file, body);
      utimesSync(file, mtime, mtime);
      rclone('copyto', file, path(remote, key));
    },
    async modTime(remote, key) {
      // "<size> <date> <time with nanoseconds> <name>", in UTC here (no TZ is set).
      const line = rclone('lsl', path(remote, key)).trim();
      const [, date, time] = line.split(/\s+/);
      return new Date(`${date}T${time?.slice(0, 12)}Z`).toISOString();
    },
  };
}

/** What rclone does, through the SDKs: keeps a blob's metadata, writes `mtime` per store. */
function sdkAsRclone(): FileTool {
  const seconds = (mtime: Date) => (mtime.getTime() / 1000).toFixed(3);
  return {
    async write(remote, key, body, mtime) {
      if (remote === 's3') {
        await s3.send(
          new PutObjectCommand({
            Bucket: 'replicated',
            Key: key,
            Body: body,
            Metadata: { mtime: seconds(mtime) },
          }),
        );
        return;
      }
      const blob = container().getBlockBlobClient(key);
      const existing = await blob.getProperties().then(
        (properties) => properties.metadata ?? {},
        () => ({}),
      );
      const metadata = { ...existing, mtime: mtime.toISOString().replace('Z', '000000Z') };
      await blob.upload(body, Buffer.byteLength(body), { metadata });
    },
    async modTime(remote, key) {
      if (remote === 's3') {
        const head = await s3.send(new HeadObjectCommand({ Bucket: 'replicated', Key: key }));
        return new Date(Number(head.Metadata?.mtime) * 1000).toISOString();
      }
      const properties = await container().getBlockBlobClient(key).getProperties();
      return new Date(properties.metadata?.mtime ?? 0).toISOString();
    },
  };
}

describe('Local mirror: who wrote it', () => {
  it("replicates an overwrite that keeps the replica's metadata (as rclone does), on each side", async () => {
    // S3 original -> Azure replica, then a same-size Azure overwrite that keeps every
    // metadata entry, the replica marker included.
    await s3.send(
      new PutObjectCommand({ Bucket: 'replicated', Key: 'keep/a.txt', Body: 'original' }),
    );
    await untilBlobIs('keep/a.txt', 'original');
    const blob = container().getBlockBlobClient('keep/a.txt');
    const kept = (await blob.getProperties()).metadata ?? {};
    expect(Object.keys(kept)).toContain('s3az_origin');
    await blob.upload('changed!', 8, { metadata: kept });
    await untilS3Is('keep/a.txt', 'changed!');

    // Azure original -> S3 replica, then an S3 overwrite with the same metadata.
    await container().getBlockBlobClient('keep/b.txt').upload('original', 8);
    await untilS3Is('keep/b.txt', 'original');
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'replicated', Key: 'keep/b.txt' }));
    expect(Object.keys(head.Metadata ?? {})).toContain('s3az_origin');
    await s3.send(
      new PutObjectCommand({
        Bucket: 'replicated',
        Key: 'keep/b.txt',
        Body: 'CHANGED!',
        Metadata: head.Metadata,
      }),
    );
    await untilBlobIs('keep/b.txt', 'CHANGED!');
    await quiet();
    // Each change was copied once: the originals, then the two overwrites.
    expect(copiesOf('keep/a.txt')).toBe(2);
    expect(copiesOf('keep/b.txt')).toBe(2);
  });

  it('replicates a same-size overwrite that keeps the marker and shows no MD5: only its provenance tells', async () => {
    // S3 original -> Azure replica; then Put Block List (no Content-MD5), same size, marker kept.
    await s3.send(
      new PutObjectCommand({ Bucket: 'replicated', Key: 'keep/c.txt', Body: 'original' }),
    );
    await untilBlobIs('keep/c.txt', 'original');
    const blob = container().getBlockBlobClient('keep/c.txt');
    const kept = (await blob.getProperties()).metadata ?? {};
    await blob.uploadData(Buffer.from('staged!!'), {
      maxSingleShotSize: 1,
      blockSize: 4,
      metadata: kept,
    });
    expect((await blob.getProperties()).contentMD5).toBeUndefined();
    await untilS3Is('keep/c.txt', 'staged!!');

    // Azure original -> S3 replica; then a one-part multipart upload (its ETag is no MD5).
    await container().getBlockBlobClient('keep/d.txt').upload('original', 8);
    await untilS3Is('keep/d.txt', 'original');
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'replicated', Key: 'keep/d.txt' }));
    const upload = await s3.send(
      new CreateMultipartUploadCommand({
        Bucket: 'replicated',
        Key: 'keep/d.txt',
        Metadata: head.Metadata,
      }),
    );
    const part = await s3.send(
      new UploadPartCommand({
        Bucket: 'replicated',
        Key: 'keep/d.txt',
        UploadId: upload.UploadId,
        PartNumber: 1,
        Body: 'MULTI!!!',
      }),
    );
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: 'replicated',
        Key: 'keep/d.txt',
        UploadId: upload.UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
      }),
    );
    await untilBlobIs('keep/d.txt', 'MULTI!!!');
  });

  it('replicates a copy of a replica to a new key: S3 CopyObject and Azure Copy Blob', async () => {
    await container().getBlockBlobClient('copies/from-az.txt').upload('from azure', 10);
    await untilS3Is('copies/from-az.txt', 'from azure');
    // CopyObject keeps the replica's metadata (its marker names copies/from-az.txt).
    await s3.send(
      new CopyObjectCommand({
        Bucket: 'replicated',
        Key: 'copies/s3-copy.txt',
        CopySource: 'replicated/copies/from-az.txt',
      }),
    );
    await untilBlobIs('copies/s3-copy.txt', 'from azure');

    await s3.send(
      new PutObjectCommand({ Bucket: 'replicated', Key: 'copies/from-s3.txt', Body: 'from s3' }),
    );
    await untilBlobIs('copies/from-s3.txt', 'from s3');
    const replica = container().getBlockBlobClient('copies/from-s3.txt');
    const copy = container().getBlockBlobClient('copies/az-copy.txt');
    // Copy Blob keeps the metadata too.
    await (await copy.beginCopyFromURL(replica.url)).pollUntilDone();
    expect((await copy.getProperties()).metadata).toHaveProperty('s3az_origin', 's3');
    await untilS3Is('copies/az-copy.txt', 'from s3');
  });

  it('ends an ADLS Gen2 directory rename of replicated files with the same tree on both sides', async () => {
    const files = ['one.txt', 'sub/two.txt'];
    for (const file of files) {
      await s3.send(
        new PutObjectCommand({ Bucket: 'replicated', Key: `tree/old/${file}`, Body: file }),
      );
    }
    for (const file of files) await untilBlobIs(`tree/old/${file}`, file);
    const written = await s3.send(
      new HeadObjectCommand({ Bucket: 'replicated', Key: `tree/old/${files[1]}` }),
    );
    // The rename happens on the account (straight to Azurite, so no BlobCreated is published):
    // ADLS Gen2 moves each file with its metadata, our replica marker included, and announces
    // one DirectoryRenamed event.
    for (const file of files) {
      const from = direct().getBlockBlobClient(`tree/old/${file}`);
      const properties = await from.getProperties();
      await direct()
        .getBlockBlobClient(`tree/new/${file}`)
        .upload(file, file.length, { metadata: properties.metadata ?? {} });
      await from.delete();
    }
    // The originals on S3 were written in an earlier second than the rename (stores keep
    // whole seconds; a write in the same second as a delete is kept).
    await untilADeleteWouldFollow(written.LastModified);
    await postEvents([
      {
        topic: TOPIC,
        subject: '/blobServices/default/containers/replicated/blobs/tree/new',
        eventType: 'Microsoft.Storage.DirectoryRenamed',
        id: 'dir-rename-1',
        eventTime: new Date().toISOString(),
        dataVersion: '',
        metadataVersion: '1',
        data: {
          api: 'RenameDirectory',
          clientRequestId: 'a-users-request',
          sourceUrl: `${mirror.emulators.azureAccountUrl}/replicated/tree/old`,
          destinationUrl: `${mirror.emulators.azureAccountUrl}/replicated/tree/new`,
          sequencer: '0000000000000000000000000000ffff0000000000000002',
        },
      },
    ]);
    for (const file of files) {
      await untilS3Is(`tree/new/${file}`, file);
      await untilS3Is(`tree/old/${file}`, undefined);
    }
  });

  it('deletes the original when its replica is deleted, and keeps a rewrite newer than the delete', async () => {
    const put = await s3.send(
      new PutObjectCommand({ Bucket: 'replicated', Key: 'del/original.txt', Body: 'original' }),
    );
    expect(put.ETag).toBeDefined();
    await untilBlobIs('del/original.txt', 'original');
    const head = await s3.send(
      new HeadObjectCommand({ Bucket: 'replicated', Key: 'del/original.txt' }),
    );
    await untilADeleteWouldFollow(head.LastModified);
    await container().getBlockBlobClient('del/original.txt').delete();
    await untilS3Is('del/original.txt', undefined);

    // The replica is deleted, the original rewritten in a later second, and the delete's
    // event arrives only after the rewrite was mirrored: the rewrite survives on both sides.
    await s3.send(
      new PutObjectCommand({ Bucket: 'replicated', Key: 'del/rewritten.txt', Body: 'first' }),
    );
    await untilBlobIs('del/rewritten.txt', 'first');
    const deletedAt = new Date();
    // Straight to Azurite: its event is held back and delivered below.
    await direct().getBlockBlobClient('del/rewritten.txt').delete();
    await untilADeleteWouldFollow(deletedAt);
    await s3.send(
      new PutObjectCommand({ Bucket: 'replicated', Key: 'del/rewritten.txt', Body: 'second' }),
    );
    await untilBlobIs('del/rewritten.txt', 'second');
    // Microsoft's BlobDeleted carries no clientRequestId: the writer is unknown.
    await postEvents([
      {
        topic: TOPIC,
        subject: '/blobServices/default/containers/replicated/blobs/del/rewritten.txt',
        eventType: 'Microsoft.Storage.BlobDeleted',
        id: 'late-delete-1',
        eventTime: deletedAt.toISOString(),
        dataVersion: '',
        metadataVersion: '1',
        data: {
          api: 'DeleteBlob',
          requestId: 'r',
          contentType: 'text/plain',
          blobType: 'BlockBlob',
          url: `${mirror.emulators.azureAccountUrl}/replicated/del/rewritten.txt`,
          sequencer: '0000000000000000000000000000ffff0000000000000003',
        },
      },
    ]);
    await quiet();
    expect(text(await readS3('del/rewritten.txt'))).toBe('second');
    expect(text(await readBlob('del/rewritten.txt'))).toBe('second');
  });

  it('lets a multipart upload started before and completed after another write win', async () => {
    const key = 'mpu/late.bin';
    const started = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: 'replicated', Key: key }),
    );
    // Another write of the key, in a later second, is mirrored first.
    await untilADeleteWouldFollow(new Date());
    await s3.send(new PutObjectCommand({ Bucket: 'replicated', Key: key, Body: 'other write' }));
    await untilBlobIs(key, 'other write');
    const part = await s3.send(
      new UploadPartCommand({
        Bucket: 'replicated',
        Key: key,
        UploadId: started.UploadId,
        PartNumber: 1,
        Body: 'multipart body',
      }),
    );
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: 'replicated',
        Key: key,
        UploadId: started.UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
      }),
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'replicated', Key: key }));
    // S3 dates the object from the upload's start: before the other write.
    const other = (await container().getBlockBlobClient(key).getProperties()).metadata ?? {};
    expect(head.LastModified?.getTime()).toBeLessThan(
      Date.parse(other.s3az_source_last_modified ?? ''),
    );
    await untilBlobIs(key, 'multipart body');
  });

  it('mirrors what rclone writes: an overwrite of a replica, and its modification time on both sides', async () => {
    // With rclone installed (CI installs it), rclone itself writes; without it, the SDK writes
    // exactly what rclone would: the blob's metadata kept, and rclone's `mtime` in each
    // store's own form.
    const mtime = new Date('2021-02-03T04:05:06.789Z');
    const tool = process.env.S3AZ_TEST_WITHOUT_RCLONE
      ? sdkAsRclone()
      : rcloneVersion()
        ? rcloneTool()
        : sdkAsRclone();
    await s3.send(
      new PutObjectCommand({ Bucket: 'replicated', Key: 'rclone/over.txt', Body: 'from s3' }),
    );
    await untilBlobIs('rclone/over.txt', 'from s3');
    await tool.write('az', 'rclone/over.txt', 'by rclone', mtime);
    // The overwrite kept the replica's marker, as rclone keeps a blob's metadata.
    const kept = await container().getBlockBlobClient('rclone/over.txt').getProperties();
    expect(kept.metadata).toHaveProperty('s3az_origin', 's3');
    await untilS3Is('rclone/over.txt', 'by rclone');

    await tool.write('s3', 'rclone/mtime-s3.txt', 'one', mtime);
    await tool.write('az', 'rclone/mtime-az.txt', 'two', mtime);
    await untilBlobIs('rclone/mtime-s3.txt', 'one');
    await untilS3Is('rclone/mtime-az.txt', 'two');
    for (const key of ['rclone/over.txt', 'rclone/mtime-s3.txt', 'rclone/mtime-az.txt']) {
      expect(await tool.modTime('s3', key), key).toBe(mtime.toISOString());
      expect(await tool.modTime('az', key), key).toBe(mtime.toISOString());
    }
  });

  it('replicates the version a rollback restores (a versioned bucket sends only ObjectRemoved)', async () => {
    // Versioning stays on for the bucket, so this test runs last in this file.
    await s3.send(
      new PutBucketVersioningCommand({
        Bucket: 'replicated',
        VersioningConfiguration: { Status: 'Enabled' },
      }),
    );
    const key = 'versions/rollback.txt';
    const v1 = await s3.send(new PutObjectCommand({ Bucket: 'replicated', Key: key, Body: 'v1' }));
    await untilBlobIs(key, 'v1');
    await untilADeleteWouldFollow(new Date());
    const v2 = await s3.send(new PutObjectCommand({ Bucket: 'replicated', Key: key, Body: 'v2' }));
    expect(v2.VersionId).not.toBe(v1.VersionId);
    await untilBlobIs(key, 'v2');
    // Deleting the current version makes v1 current again, with its old date.
    await s3.send(
      new DeleteObjectCommand({ Bucket: 'replicated', Key: key, VersionId: v2.VersionId }),
    );
    await untilBlobIs(key, 'v1');
    // A delete marker hides it on both sides; deleting the marker brings v1 back on both.
    const marker = await s3.send(new DeleteObjectCommand({ Bucket: 'replicated', Key: key }));
    expect(marker.DeleteMarker).toBe(true);
    await untilBlobIs(key, undefined);
    await s3.send(
      new DeleteObjectCommand({ Bucket: 'replicated', Key: key, VersionId: marker.VersionId }),
    );
    await untilBlobIs(key, 'v1');
    await quiet();
    expect(text(await readS3(key))).toBe('v1');
  });
});
