import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashOnce } from '../../src/local/s3-store-digests.ts';
import { createFauxqsS3Store } from '../../src/local/s3-versioning.ts';

interface Store {
  createBucket(name: string): void;
  putObject(bucket: string, key: string, body: Buffer): { etag: string; body: Buffer };
  createMultipartUpload(bucket: string, key: string): string;
  uploadPart(uploadId: string, partNumber: number, body: Buffer): string;
  completeMultipartUpload(
    uploadId: string,
    parts: Array<{ partNumber: number; etag: string }>,
  ): { etag: string; body: Buffer; contentLength: number };
  multipartUploads: Map<string, unknown>;
}

async function storeWithBucket() {
  const store = (await createFauxqsS3Store()) as unknown as Store;
  const knownMd5 = new WeakMap<Buffer, string>();
  hashOnce(store, knownMd5);
  store.createBucket('b');
  return { store, knownMd5 };
}

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');
const MiB = 1024 * 1024;

describe('hashOnce', () => {
  it('stores a body with the MD5 the layer verified, without hashing it again', async () => {
    const { store, knownMd5 } = await storeWithBucket();
    const body = randomBytes(1000);
    // A value that is not the body's MD5 shows which one the store used.
    knownMd5.set(body, 'f'.repeat(32));
    expect(store.putObject('b', 'k', body).etag).toBe(`"${'f'.repeat(32)}"`);
    const other = randomBytes(1000);
    expect(store.putObject('b', 'k2', other).etag).toBe(`"${md5(other)}"`);
  });

  it('makes a multipart ETag of the MD5s the parts had when they arrived', async () => {
    const { store, knownMd5 } = await storeWithBucket();
    const upload = store.createMultipartUpload('b', 'big');
    const first = randomBytes(5 * MiB);
    const last = randomBytes(1000);
    knownMd5.set(first, 'a'.repeat(32));
    const firstEtag = store.uploadPart(upload, 1, first);
    const lastEtag = store.uploadPart(upload, 2, last);
    expect(firstEtag).toBe(`"${'a'.repeat(32)}"`);
    expect(lastEtag).toBe(`"${md5(last)}"`);
    const object = store.completeMultipartUpload(upload, [
      { partNumber: 1, etag: firstEtag },
      { partNumber: 2, etag: lastEtag.replaceAll('"', '') },
    ]);
    const expected = md5(
      Buffer.concat([Buffer.from('a'.repeat(32), 'hex'), Buffer.from(md5(last), 'hex')]),
    );
    expect(object.etag).toBe(`"${expected}-2"`);
    expect(object.body.equals(Buffer.concat([first, last]))).toBe(true);
    expect(object.contentLength).toBe(first.length + last.length);
    expect(store.multipartUploads.has(upload)).toBe(false);
  });

  it('leaves a completion that S3 refuses to fauxqs, which refuses it', async () => {
    const { store } = await storeWithBucket();
    const upload = store.createMultipartUpload('b', 'big');
    const small = store.uploadPart(upload, 1, randomBytes(1000));
    const last = store.uploadPart(upload, 2, randomBytes(1000));
    expect(() =>
      store.completeMultipartUpload(upload, [
        { partNumber: 1, etag: small },
        { partNumber: 2, etag: last },
      ]),
    ).toThrow(/smaller than the minimum/);
    expect(() =>
      store.completeMultipartUpload(upload, [{ partNumber: 1, etag: `"${'0'.repeat(32)}"` }]),
    ).toThrow(/could not be found/);
    expect(() =>
      store.completeMultipartUpload(upload, [
        { partNumber: 2, etag: last },
        { partNumber: 1, etag: small },
      ]),
    ).toThrow(/ascending order/);
    expect(store.multipartUploads.has(upload)).toBe(true);
  });
});
