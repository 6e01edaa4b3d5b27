import { createHash, randomBytes } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalMirror, startLocalMirror } from '../../src/local/mirror.ts';

let mirror: LocalMirror;
let s3: S3Client;
let blobs: BlobServiceClient;

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
  const blob = blobs.getContainerClient('replicated').getBlockBlobClient(key);
  return (await blob.exists()) ? blob.downloadToBuffer() : undefined;
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

describe('Local mirror: end to end', () => {
  it('mirrors a file put through S3 into Azure', async () => {
    const body = randomBytes(100_000);
    await s3.send(
      new PutObjectCommand({ Bucket: 'replicated', Key: 'from-s3/a b+c.bin', Body: body }),
    );
    expect(sha(await eventually(() => readBlob('from-s3/a b+c.bin')))).toBe(sha(body));
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
});
