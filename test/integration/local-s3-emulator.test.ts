import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  ListPartsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  type S3Client,
  S3Client as S3ClientClass,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type RunningS3Emulator, startS3Emulator } from '../../src/local/s3-emulator.ts';
import { makeS3Client as makeS3ClientFrom } from '../../src/stores/clients.ts';
import {
  emulatorEnv,
  makePlainS3Client,
  makeS3Client,
  makeSqsClient,
  uniqueName,
} from '../support/emulators.ts';

const MiB = 1024 * 1024;

interface SdkError {
  name?: string;
  $metadata?: { httpStatusCode?: number };
}

/** The error a promise rejects with, to assert on its name and status. */
async function failure(promise: Promise<unknown>): Promise<SdkError> {
  try {
    await promise;
  } catch (error) {
    return error as SdkError;
  }
  throw new Error('expected the request to fail, and it succeeded');
}

function crc32Base64(body: Buffer): string {
  const value = Buffer.alloc(4);
  value.writeUInt32BE(crc32(body));
  return value.toString('base64');
}

const md5 = (body: Buffer) => createHash('md5').update(body).digest();

let s3: S3Client;
let bucket: string;

beforeAll(async () => {
  s3 = makeS3Client();
  bucket = uniqueName('s3emu');
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
});

async function head(key: string) {
  return s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
}

async function text(key: string, range?: string): Promise<string> {
  const out = await s3.send(
    new GetObjectCommand({ Bucket: bucket, Key: key, ...(range && { Range: range }) }),
  );
  return (await out.Body?.transformToString()) ?? '';
}

/** Opens a multipart upload and uploads `parts` to it; returns its id and the part eTags. */
async function openUpload(key: string, parts: Buffer[], options: { checksum?: boolean } = {}) {
  const created = await s3.send(
    new CreateMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      ...(options.checksum && { ChecksumAlgorithm: 'CRC32' }),
    }),
  );
  const uploadId = created.UploadId ?? '';
  const etags: string[] = [];
  for (const [index, body] of parts.entries()) {
    const out = await s3.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: index + 1,
        Body: body,
        ...(options.checksum && { ChecksumCRC32: crc32Base64(body) }),
      }),
    );
    etags.push(out.ETag ?? '');
  }
  const completed = etags.map((etag, index) => ({ PartNumber: index + 1, ETag: etag }));
  return { uploadId, etags, completed };
}

/** An S3 client for an emulator started in this process, signing with `accessKeyId`. */
function clientOf(emulator: RunningS3Emulator, accessKeyId = 'AKIALOCALTEST0000001'): S3Client {
  return makeS3ClientFrom({
    AWS_ENDPOINT_URL_S3: emulator.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: 'local-secret',
  });
}

/** One-part multipart upload of `body` to `key`; returns the CompleteMultipartUpload answer. */
async function multipartPut(
  client: S3Client,
  target: { Bucket: string; Key: string },
  body: string,
  properties: { ContentType?: string; CacheControl?: string; Metadata?: Record<string, string> },
) {
  const created = await client.send(new CreateMultipartUploadCommand({ ...target, ...properties }));
  const part = await client.send(
    new UploadPartCommand({ ...target, UploadId: created.UploadId, PartNumber: 1, Body: body }),
  );
  return {
    uploadId: created.UploadId ?? '',
    complete: () =>
      client.send(
        new CompleteMultipartUploadCommand({
          ...target,
          UploadId: created.UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
        }),
      ),
  };
}

describe('Class: S3 emulator', () => {
  describe('listing order', () => {
    it('lists keys in UTF-8 binary order, page after page, as S3 does', async () => {
      // Prepare: keys that locale order and byte order sort differently.
      const keys = [
        'order/a',
        'order/B',
        'order/a-b',
        'order/a/x',
        'order/a_b',
        'order/Z',
        'order/é',
        'order/aa',
      ];
      for (const key of keys)
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'x' }));
      // Act: two keys a page.
      const listed: string[] = [];
      let token: string | undefined;
      do {
        const page = await s3.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: 'order/',
            MaxKeys: 2,
            ContinuationToken: token,
          }),
        );
        listed.push(...(page.Contents ?? []).map((object) => object.Key ?? ''));
        token = page.NextContinuationToken;
      } while (token);
      // Assess
      const byBytes = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      expect(listed).toEqual(byBytes);
      expect(byBytes.slice(0, 3)).toEqual(['order/B', 'order/Z', 'order/a']);
    });
  });

  describe('conditional writes', () => {
    it('refuses If-None-Match: * on an existing key with 412 PreconditionFailed and keeps the object', async () => {
      // Prepare
      await s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'cond/exists',
          Body: 'first',
          IfNoneMatch: '*',
        }),
      );
      // Act
      const error = await failure(
        s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: 'cond/exists',
            Body: 'second',
            IfNoneMatch: '*',
          }),
        ),
      );
      // Assess
      expect(error).toMatchObject({
        name: 'PreconditionFailed',
        $metadata: { httpStatusCode: 412 },
      });
      expect(await text('cond/exists')).toBe('first');
    });

    it('writes with If-Match on the current eTag and refuses another eTag with 412', async () => {
      // Prepare
      const first = await s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: 'cond/match', Body: 'one' }),
      );
      // Act
      const second = await s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'cond/match',
          Body: 'two',
          IfMatch: first.ETag,
        }),
      );
      const stale = await failure(
        s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: 'cond/match',
            Body: 'three',
            IfMatch: first.ETag,
          }),
        ),
      );
      // Assess
      expect(second.ETag).not.toBe(first.ETag);
      expect(stale).toMatchObject({ $metadata: { httpStatusCode: 412 } });
      expect(await text('cond/match')).toBe('two');
    });

    it('answers If-Match on a missing key with 404 NoSuchKey, as S3 does, and writes nothing', async () => {
      const error = await failure(
        s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: 'cond/missing',
            Body: 'x',
            IfMatch: '"0123456789abcdef0123456789abcdef"',
          }),
        ),
      );
      expect(error).toMatchObject({ name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } });
      expect(await failure(head('cond/missing'))).toMatchObject({ name: 'NotFound' });
    });

    it('lets exactly one of many concurrent If-None-Match: * writes to one key win', async () => {
      // Prepare
      const bodies = Array.from({ length: 12 }, (_, i) => `writer ${i}`);
      // Act
      const results = await Promise.allSettled(
        bodies.map((body) =>
          s3.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: 'cond/race',
              Body: body,
              IfNoneMatch: '*',
            }),
          ),
        ),
      );
      // Assess
      const winners = results.flatMap((result, i) => (result.status === 'fulfilled' ? [i] : []));
      expect(winners).toHaveLength(1);
      const losers = results.filter((result) => result.status === 'rejected');
      for (const loser of losers) {
        expect(loser.reason).toMatchObject({ $metadata: { httpStatusCode: 412 } });
      }
      expect(await text('cond/race')).toBe(bodies[winners[0] ?? -1]);
    });

    it('honours If-None-Match and If-Match on CompleteMultipartUpload, and the upload stays open', async () => {
      // Prepare
      const existing = await s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: 'cond/mpu', Body: 'already here' }),
      );
      const { uploadId, completed } = await openUpload('cond/mpu', [Buffer.from('multipart')]);
      const complete = (condition: { IfNoneMatch?: string; IfMatch?: string }) =>
        s3.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: 'cond/mpu',
            UploadId: uploadId,
            MultipartUpload: { Parts: completed },
            ...condition,
          }),
        );
      // Act
      const absent = await failure(complete({ IfNoneMatch: '*' }));
      const wrong = await failure(complete({ IfMatch: '"ffffffffffffffffffffffffffffffff"' }));
      const done = await complete({ IfMatch: existing.ETag ?? '' });
      // Assess
      expect(absent).toMatchObject({ $metadata: { httpStatusCode: 412 } });
      expect(wrong).toMatchObject({ $metadata: { httpStatusCode: 412 } });
      expect(done.ETag).toMatch(/-1"$/);
      expect(await text('cond/mpu')).toBe('multipart');
    });

    it('honours If-Match on HeadObject (412) and If-None-Match (304)', async () => {
      const put = await s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: 'cond/head', Body: 'x' }),
      );
      const wrong = await failure(
        s3.send(
          new HeadObjectCommand({
            Bucket: bucket,
            Key: 'cond/head',
            IfMatch: '"ffffffffffffffffffffffffffffffff"',
          }),
        ),
      );
      const same = await failure(
        s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cond/head', IfNoneMatch: put.ETag })),
      );
      const right = await s3.send(
        new HeadObjectCommand({ Bucket: bucket, Key: 'cond/head', IfMatch: put.ETag }),
      );
      expect(wrong).toMatchObject({ $metadata: { httpStatusCode: 412 } });
      expect(same).toMatchObject({ $metadata: { httpStatusCode: 304 } });
      expect(right.ETag).toBe(put.ETag);
    });
  });

  describe('system properties', () => {
    const properties = {
      ContentType: 'text/plain; charset=utf-8',
      ContentEncoding: 'identity',
      ContentLanguage: 'de-CH',
      ContentDisposition: 'attachment; filename="a b.txt"',
      CacheControl: 'max-age=60, private',
    };

    it('returns what PutObject was given on HEAD, GET and ranged GET', async () => {
      // Prepare
      await s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'props/put',
          Body: 'hello world',
          ...properties,
        }),
      );
      // Act
      const headed = await head('props/put');
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'props/put' }));
      const ranged = await s3.send(
        new GetObjectCommand({ Bucket: bucket, Key: 'props/put', Range: 'bytes=6-10' }),
      );
      // Assess
      expect(headed).toMatchObject(properties);
      expect(got).toMatchObject(properties);
      expect(ranged).toMatchObject({ ...properties, ContentRange: 'bytes 6-10/11' });
      expect(await ranged.Body?.transformToString()).toBe('world');
      await got.Body?.transformToString();
    });

    it('keeps what CreateMultipartUpload was given, and a later plain PutObject clears it', async () => {
      // Prepare
      const created = await s3.send(
        new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'props/mpu', ...properties }),
      );
      const part = await s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: 'props/mpu',
          UploadId: created.UploadId,
          PartNumber: 1,
          Body: 'only part',
        }),
      );
      await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: 'props/mpu',
          UploadId: created.UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
        }),
      );
      // Act
      const before = await head('props/mpu');
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'props/mpu', Body: 'plain' }));
      const after = await head('props/mpu');
      // Assess
      expect(before).toMatchObject(properties);
      expect(after.ContentLanguage).toBeUndefined();
      expect(after.ContentDisposition).toBeUndefined();
      expect(after.CacheControl).toBeUndefined();
      expect(after.ContentEncoding).toBeUndefined();
    });

    it("keeps them on CopyObject, or takes the request's with the REPLACE directive", async () => {
      // Prepare
      await s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: 'props/src', Body: 'copied', ...properties }),
      );
      // Act
      await s3.send(
        new CopyObjectCommand({
          Bucket: bucket,
          Key: 'props/copy',
          CopySource: `${bucket}/props/src`,
        }),
      );
      await s3.send(
        new CopyObjectCommand({
          Bucket: bucket,
          Key: 'props/replaced',
          CopySource: `${bucket}/props/src`,
          MetadataDirective: 'REPLACE',
          ContentType: 'application/x-new',
          ContentLanguage: 'fr',
        }),
      );
      // Assess
      expect(await head('props/copy')).toMatchObject(properties);
      const replaced = await head('props/replaced');
      expect(replaced).toMatchObject({ ContentType: 'application/x-new', ContentLanguage: 'fr' });
      expect(replaced.ContentDisposition).toBeUndefined();
    });

    it('stores an object whose Content-Type is a form type like any other', async () => {
      await s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'props/form',
          Body: 'a=1&b=2',
          ContentType: 'application/x-www-form-urlencoded',
        }),
      );
      expect((await head('props/form')).ContentType).toBe('application/x-www-form-urlencoded');
      expect(await text('props/form')).toBe('a=1&b=2');
    });
  });

  describe('multipart uploads', () => {
    it('lists the parts uploaded so far with number, eTag, size, last-modified and checksum', async () => {
      // Prepare
      const bodies = [randomBytes(1000), randomBytes(10)];
      const { uploadId, etags } = await openUpload('mpu/list', bodies, { checksum: true });
      // Act
      const listed = await s3.send(
        new ListPartsCommand({ Bucket: bucket, Key: 'mpu/list', UploadId: uploadId }),
      );
      // Assess
      expect(listed.IsTruncated).toBe(false);
      expect(listed.Parts?.map((part) => [part.PartNumber, part.ETag, part.Size])).toEqual([
        [1, etags[0], 1000],
        [2, etags[1], 10],
      ]);
      expect(listed.Parts?.map((part) => part.ChecksumCRC32)).toEqual(bodies.map(crc32Base64));
      expect(listed.Parts?.every((part) => part.LastModified instanceof Date)).toBe(true);
    });

    it('pages ListParts with MaxParts and PartNumberMarker', async () => {
      const { uploadId } = await openUpload('mpu/pages', [
        Buffer.from('a'),
        Buffer.from('b'),
        Buffer.from('c'),
      ]);
      const first = await s3.send(
        new ListPartsCommand({ Bucket: bucket, Key: 'mpu/pages', UploadId: uploadId, MaxParts: 2 }),
      );
      const second = await s3.send(
        new ListPartsCommand({
          Bucket: bucket,
          Key: 'mpu/pages',
          UploadId: uploadId,
          PartNumberMarker: first.NextPartNumberMarker,
        }),
      );
      expect(first.IsTruncated).toBe(true);
      expect(first.Parts?.map((part) => part.PartNumber)).toEqual([1, 2]);
      expect(second.IsTruncated).toBe(false);
      expect(second.Parts?.map((part) => part.PartNumber)).toEqual([3]);
    });

    const unknownUpload: Array<[string, (uploadId: string) => Promise<unknown>]> = [
      [
        'UploadPart',
        (UploadId) =>
          s3.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key: 'mpu/x',
              UploadId,
              PartNumber: 1,
              Body: 'x',
            }),
          ),
      ],
      [
        'ListParts',
        (UploadId) => s3.send(new ListPartsCommand({ Bucket: bucket, Key: 'mpu/x', UploadId })),
      ],
      [
        'AbortMultipartUpload',
        (UploadId) =>
          s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'mpu/x', UploadId })),
      ],
      [
        'CompleteMultipartUpload',
        (UploadId) =>
          s3.send(
            new CompleteMultipartUploadCommand({
              Bucket: bucket,
              Key: 'mpu/x',
              UploadId,
              MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"x"' }] },
            }),
          ),
      ],
    ];

    it.each(unknownUpload)(
      'answers %s on an unknown upload id with 404 NoSuchUpload',
      async (_name, call) => {
        const error = await failure(call('no-such-upload'));
        expect(error).toMatchObject({ name: 'NoSuchUpload', $metadata: { httpStatusCode: 404 } });
      },
    );

    it('answers NoSuchUpload for an upload id used with another key', async () => {
      const { uploadId } = await openUpload('mpu/owner', []);
      const error = await failure(
        s3.send(new ListPartsCommand({ Bucket: bucket, Key: 'mpu/other', UploadId: uploadId })),
      );
      expect(error).toMatchObject({ name: 'NoSuchUpload' });
    });

    it('refuses a commit whose MpuObjectSize is not the sum of its parts, and creates nothing', async () => {
      // Prepare
      const { uploadId, completed } = await openUpload('mpu/size', [randomBytes(100)]);
      const complete = (size: number) =>
        s3.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: 'mpu/size',
            UploadId: uploadId,
            MultipartUpload: { Parts: completed },
            MpuObjectSize: size,
          }),
        );
      // Act
      const error = await failure(complete(101));
      const missing = await failure(head('mpu/size'));
      await complete(100);
      // Assess
      expect(error).toMatchObject({ name: 'InvalidRequest', $metadata: { httpStatusCode: 400 } });
      expect(missing).toMatchObject({ name: 'NotFound' });
      expect((await head('mpu/size')).ContentLength).toBe(100);
    });

    it('refuses a commit that names a part with another checksum than it was uploaded with', async () => {
      const body = randomBytes(64);
      const { uploadId, etags } = await openUpload('mpu/crc', [body], { checksum: true });
      const error = await failure(
        s3.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: 'mpu/crc',
            UploadId: uploadId,
            MultipartUpload: {
              Parts: [
                { PartNumber: 1, ETag: etags[0], ChecksumCRC32: crc32Base64(randomBytes(64)) },
              ],
            },
          }),
        ),
      );
      expect(error).toMatchObject({ name: 'InvalidPart', $metadata: { httpStatusCode: 400 } });
    });

    it("gives a multipart object S3's eTag: the MD5 of the parts' MD5s, a dash and the count", async () => {
      // Prepare
      const parts = [randomBytes(5 * MiB), randomBytes(1234)];
      const { uploadId, completed } = await openUpload('mpu/etag', parts);
      // Act
      const done = await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: 'mpu/etag',
          UploadId: uploadId,
          MultipartUpload: { Parts: completed },
        }),
      );
      // Assess
      const expected = createHash('md5')
        .update(Buffer.concat(parts.map(md5)))
        .digest('hex');
      expect(done.ETag).toBe(`"${expected}-2"`);
      expect((await head('mpu/etag')).ETag).toBe(`"${expected}-2"`);
    });
  });

  describe('checksums', () => {
    it('answers the MD5 ETags S3 does for bodies sent with Content-MD5, plain and aws-chunked', async () => {
      // Prepare
      const small = randomBytes(3000);
      const parts = [randomBytes(5 * MiB), randomBytes(70_000)];
      // Act
      const put = await s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'sum/etag',
          Body: small,
          ContentMD5: md5(small).toString('base64'),
        }),
      );
      const created = await s3.send(
        new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'sum/etag-mpu' }),
      );
      const etags: string[] = [];
      for (const [index, body] of parts.entries()) {
        // A stream of unknown length goes aws-chunked, with the CRC32 in a trailer.
        const out = await s3.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: 'sum/etag-mpu',
            UploadId: created.UploadId,
            PartNumber: index + 1,
            Body: Readable.from([body]),
            ContentLength: body.length,
            ContentMD5: md5(body).toString('base64'),
          }),
        );
        etags.push(out.ETag ?? '');
      }
      const done = await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: 'sum/etag-mpu',
          UploadId: created.UploadId,
          MultipartUpload: {
            Parts: etags.map((etag, index) => ({ PartNumber: index + 1, ETag: etag })),
          },
        }),
      );
      // Assess
      expect(put.ETag).toBe(`"${md5(small).toString('hex')}"`);
      expect(etags).toEqual(parts.map((body) => `"${md5(body).toString('hex')}"`));
      const ofParts = createHash('md5')
        .update(Buffer.concat(parts.map(md5)))
        .digest('hex');
      expect(done.ETag).toBe(`"${ofParts}-2"`);
      const stored = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'sum/etag-mpu' }));
      const bytes = Buffer.from((await stored.Body?.transformToByteArray()) ?? []);
      expect(bytes.equals(Buffer.concat(parts))).toBe(true);
      expect(stored.ContentEncoding).toBeUndefined();
    });

    it('refuses a wrong Content-MD5 with 400 BadDigest and stores nothing', async () => {
      const error = await failure(
        s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: 'sum/md5',
            Body: 'hello',
            ContentMD5: md5(Buffer.from('other')).toString('base64'),
          }),
        ),
      );
      expect(error).toMatchObject({ name: 'BadDigest', $metadata: { httpStatusCode: 400 } });
      expect(await failure(head('sum/md5'))).toMatchObject({ name: 'NotFound' });
    });

    it('refuses a wrong x-amz-checksum-crc32 on PutObject and UploadPart with 400 BadDigest', async () => {
      // Prepare
      const wrong = crc32Base64(Buffer.from('something else'));
      const { uploadId } = await openUpload('sum/part', []);
      // Act
      const put = await failure(
        s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: 'sum/crc',
            Body: 'hello',
            ChecksumCRC32: wrong,
          }),
        ),
      );
      const part = await failure(
        s3.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: 'sum/part',
            UploadId: uploadId,
            PartNumber: 1,
            Body: 'hello',
            ChecksumCRC32: wrong,
          }),
        ),
      );
      const listed = await s3.send(
        new ListPartsCommand({ Bucket: bucket, Key: 'sum/part', UploadId: uploadId }),
      );
      // Assess
      expect(put).toMatchObject({ name: 'BadDigest', $metadata: { httpStatusCode: 400 } });
      expect(part).toMatchObject({ name: 'BadDigest', $metadata: { httpStatusCode: 400 } });
      expect(await failure(head('sum/crc'))).toMatchObject({ name: 'NotFound' });
      expect(listed.Parts ?? []).toEqual([]);
    });

    it('verifies the CRC32 trailer of an aws-chunked body, as the SDK sends streams', async () => {
      // Prepare
      const body = Buffer.from('streamed through aws-chunked');
      const send = (trailer: string) =>
        fetch(`${emulatorEnv().s3Endpoint}/${bucket}/sum/chunked`, {
          method: 'PUT',
          headers: {
            'content-encoding': 'aws-chunked',
            'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
            'x-amz-decoded-content-length': String(body.length),
            'x-amz-trailer': 'x-amz-checksum-crc32',
          },
          body: Buffer.concat([
            Buffer.from(`${body.length.toString(16)}\r\n`),
            body,
            Buffer.from(`\r\n0\r\nx-amz-checksum-crc32:${trailer}\r\n\r\n`),
          ]),
        });
      // Act
      const wrong = await send(crc32Base64(Buffer.from('not the body')));
      const wrongText = await wrong.text();
      const missing = await failure(head('sum/chunked'));
      const right = await send(crc32Base64(body));
      // Assess
      expect(wrong.status).toBe(400);
      expect(wrongText).toContain('<Code>BadDigest</Code>');
      expect(missing).toMatchObject({ name: 'NotFound' });
      expect(right.status).toBe(200);
      expect(right.headers.get('x-amz-checksum-crc32')).toBe(crc32Base64(body));
      expect(await text('sum/chunked')).toBe(body.toString());
    });

    it("accepts the SDK's default checksums, in a header for buffers and a trailer for streams", async () => {
      // Prepare
      const plain = makePlainS3Client();
      const body = randomBytes(70_000);
      // Act
      const fromBuffer = await plain.send(
        new PutObjectCommand({ Bucket: bucket, Key: 'sum/plain-buffer', Body: body }),
      );
      const fromStream = await plain.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'sum/plain-stream',
          Body: Readable.from([body.subarray(0, 30_000), body.subarray(30_000)]),
          ContentLength: body.length,
        }),
      );
      // Assess
      expect(fromBuffer.ChecksumCRC32).toBe(crc32Base64(body));
      expect(fromStream.ChecksumCRC32).toBe(crc32Base64(body));
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'sum/plain-stream' }));
      expect(Buffer.from((await got.Body?.transformToByteArray()) ?? [])).toEqual(body);
    });
  });

  describe('missing buckets', () => {
    it('answers GET, PUT, list and conditional PUT with 404 NoSuchBucket, and HEAD with 404', async () => {
      const missing = uniqueName('nobucket');
      const results = await Promise.all([
        failure(s3.send(new GetObjectCommand({ Bucket: missing, Key: 'k' }))),
        failure(s3.send(new PutObjectCommand({ Bucket: missing, Key: 'k', Body: 'x' }))),
        failure(s3.send(new ListObjectsV2Command({ Bucket: missing }))),
        failure(
          s3.send(new PutObjectCommand({ Bucket: missing, Key: 'k', Body: 'x', IfMatch: '"abc"' })),
        ),
        failure(
          s3.send(new ListPartsCommand({ Bucket: missing, Key: 'k', UploadId: 'no-such-upload' })),
        ),
      ]);
      for (const error of results) {
        expect(error).toMatchObject({ name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } });
      }
      expect(
        await failure(s3.send(new HeadObjectCommand({ Bucket: missing, Key: 'k' }))),
      ).toMatchObject({ $metadata: { httpStatusCode: 404 } });
    });
  });

  describe('access and SQS', () => {
    it('refuses a request signed with an unknown access key id', async () => {
      const env = emulatorEnv();
      const stranger = new S3ClientClass({
        endpoint: env.s3Endpoint,
        forcePathStyle: true,
        region: env.region,
        credentials: { accessKeyId: 'AKIAUNKNOWN000000000', secretAccessKey: 'x' },
      });
      const error = await failure(
        stranger.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'x' })),
      );
      expect(error).toMatchObject({
        name: 'InvalidAccessKeyId',
        $metadata: { httpStatusCode: 403 },
      });
    });

    it('serves SQS on the same port', async () => {
      // Prepare
      const sqs = makeSqsClient();
      const queue = await sqs.send(new CreateQueueCommand({ QueueName: uniqueName('emu') }));
      // Act
      await sqs.send(new SendMessageCommand({ QueueUrl: queue.QueueUrl, MessageBody: 'ping' }));
      const received = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queue.QueueUrl, WaitTimeSeconds: 5 }),
      );
      // Assess
      const message = received.Messages?.[0];
      expect(message?.Body).toBe('ping');
      await sqs.send(
        new DeleteMessageCommand({
          QueueUrl: queue.QueueUrl,
          ReceiptHandle: message?.ReceiptHandle,
        }),
      );
    });

    it('answers a long poll with no messages only when its wait ends, as SQS does', async () => {
      // Prepare: two receives waiting on an empty queue.
      const sqs = makeSqsClient();
      const { QueueUrl } = await sqs.send(
        new CreateQueueCommand({ QueueName: uniqueName('poll') }),
      );
      const settled: string[] = [];
      const receive = (name: string) =>
        sqs
          .send(
            new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 20, MaxNumberOfMessages: 10 }),
          )
          .then((out) => {
            settled.push(name);
            return (out.Messages ?? []).map((message) => message.Body);
          });
      const first = receive('first');
      const second = receive('second');
      // A request sent after both, and answered, gives them time to reach the queue.
      await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['All'] }));
      // Act: a batch (enqueued one message at a time), then (once one receive has it) another.
      await sqs.send(
        new SendMessageBatchCommand({
          QueueUrl,
          Entries: ['a', 'b', 'c'].map((body) => ({ Id: body, MessageBody: body })),
        }),
      );
      const early = await Promise.race([first, second]);
      await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['All'] }));
      const stillWaiting = settled.length;
      await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'd' }));
      const both = await Promise.all([first, second]);
      // Assess: the other receive did not answer empty when the batch came; it waited and took
      // the next message.
      expect(early.sort()).toEqual(['a', 'b', 'c']);
      expect(stillWaiting).toBe(1);
      expect(both.map((bodies) => bodies.join(',')).sort()).toEqual(['a,b,c', 'd']);
    });
  });

  describe('dates and versions (an emulator in this process, on a clock the test sets)', () => {
    let emulator: RunningS3Emulator;
    let client: S3Client;
    let versioned: string;
    const T0 = new Date('2030-01-01T00:00:00.000Z');
    const T1 = new Date('2030-01-01T00:10:00.000Z');
    const T2 = new Date('2030-01-01T00:20:00.000Z');

    beforeAll(async () => {
      emulator = await startS3Emulator({ accessKeyId: 'AKIALOCALTEST0000001' });
      client = clientOf(emulator);
      versioned = uniqueName('versioned');
      await client.send(new CreateBucketCommand({ Bucket: versioned }));
      await client.send(
        new PutBucketVersioningCommand({
          Bucket: versioned,
          VersioningConfiguration: { Status: 'Enabled' },
        }),
      );
    });

    afterEach(() => {
      vi.useRealTimers();
    });

    afterAll(async () => {
      await emulator?.close();
    });

    it('dates a multipart object from CreateMultipartUpload, not from its completion', async () => {
      // Prepare
      const plain = uniqueName('dates');
      await client.send(new CreateBucketCommand({ Bucket: plain }));
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(T0);
      const upload = await multipartPut(client, { Bucket: plain, Key: 'mpu' }, 'parts', {});
      const listed = await client.send(new ListMultipartUploadsCommand({ Bucket: plain }));
      // Act
      vi.setSystemTime(T1);
      await upload.complete();
      // Assess
      expect(listed.Uploads?.[0]?.Initiated).toEqual(T0);
      const headed = await client.send(new HeadObjectCommand({ Bucket: plain, Key: 'mpu' }));
      const got = await client.send(new GetObjectCommand({ Bucket: plain, Key: 'mpu' }));
      await got.Body?.transformToString();
      const list = await client.send(new ListObjectsV2Command({ Bucket: plain }));
      expect(headed.LastModified).toEqual(T0);
      expect(got.LastModified).toEqual(T0);
      expect(list.Contents?.[0]?.LastModified).toEqual(T0);
    });

    it('reports and changes the bucket versioning status', async () => {
      // Prepare
      const other = uniqueName('status');
      await client.send(new CreateBucketCommand({ Bucket: other }));
      const never = await client.send(new GetBucketVersioningCommand({ Bucket: other }));
      // Act
      await client.send(
        new PutBucketVersioningCommand({
          Bucket: other,
          VersioningConfiguration: { Status: 'Suspended' },
        }),
      );
      // Assess
      expect(never.Status).toBeUndefined();
      expect((await client.send(new GetBucketVersioningCommand({ Bucket: other }))).Status).toBe(
        'Suspended',
      );
      expect(
        (await client.send(new GetBucketVersioningCommand({ Bucket: versioned }))).Status,
      ).toBe('Enabled');
    });

    it('keeps every version, and deleting the current one by id brings the previous one back as it was', async () => {
      // Prepare: v1 is a multipart object (an eTag no PutObject of its bytes gives) at T0,
      // v2 a plain put at T1.
      const target = { Bucket: versioned, Key: 'doc.txt' };
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(T0);
      const upload = await multipartPut(client, target, 'version one', {
        ContentType: 'text/markdown',
        CacheControl: 'max-age=1',
        Metadata: { origin: 'first' },
      });
      const v1 = await upload.complete();
      vi.setSystemTime(T1);
      const v2 = await client.send(
        new PutObjectCommand({ ...target, Body: 'version two', ContentType: 'text/plain' }),
      );
      const older = await client.send(new GetObjectCommand({ ...target, VersionId: v1.VersionId }));
      const olderBody = await older.Body?.transformToString();
      // Act
      vi.setSystemTime(T2);
      const removed = await client.send(
        new DeleteObjectCommand({ ...target, VersionId: v2.VersionId }),
      );
      // Assess
      expect(v1.VersionId).toMatch(/^[\w-]{32}$/);
      expect(v2.VersionId).toMatch(/^[\w-]{32}$/);
      expect(v2.VersionId).not.toBe(v1.VersionId);
      expect(olderBody).toBe('version one');
      expect(older).toMatchObject({ VersionId: v1.VersionId, ETag: v1.ETag, LastModified: T0 });
      expect(removed.VersionId).toBe(v2.VersionId);
      expect(removed.DeleteMarker).toBeUndefined();
      const got = await client.send(new GetObjectCommand(target));
      expect(await got.Body?.transformToString()).toBe('version one');
      expect(got).toMatchObject({
        VersionId: v1.VersionId,
        ETag: v1.ETag,
        LastModified: T0,
        ContentType: 'text/markdown',
        CacheControl: 'max-age=1',
        Metadata: { origin: 'first' },
      });
      expect(v1.ETag).toMatch(/-1"$/);
      const listed = await client.send(new ListObjectsV2Command({ Bucket: versioned }));
      expect(listed.Contents?.find((entry) => entry.Key === 'doc.txt')).toMatchObject({
        ETag: v1.ETag,
        LastModified: T0,
      });
    });

    it('hides a key behind a delete marker, and removing the marker by id brings it back', async () => {
      // Prepare
      const target = { Bucket: versioned, Key: 'marked.txt' };
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(T0);
      const v1 = await client.send(new PutObjectCommand({ ...target, Body: 'kept bytes' }));
      // Act
      vi.setSystemTime(T1);
      const marked = await client.send(new DeleteObjectCommand(target));
      const hidden = await failure(client.send(new GetObjectCommand(target)));
      const versions = await client.send(
        new ListObjectVersionsCommand({ Bucket: versioned, Prefix: 'marked' }),
      );
      const unmarked = await client.send(
        new DeleteObjectCommand({ ...target, VersionId: marked.VersionId }),
      );
      // Assess
      expect(marked.DeleteMarker).toBe(true);
      expect(marked.VersionId).toMatch(/^[\w-]{32}$/);
      expect(hidden).toMatchObject({ name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } });
      expect(versions.DeleteMarkers).toEqual([
        expect.objectContaining({
          Key: 'marked.txt',
          VersionId: marked.VersionId,
          IsLatest: true,
          LastModified: T1,
        }),
      ]);
      expect(versions.Versions).toEqual([
        expect.objectContaining({
          Key: 'marked.txt',
          VersionId: v1.VersionId,
          IsLatest: false,
          ETag: v1.ETag,
          Size: 10,
          LastModified: T0,
        }),
      ]);
      expect(unmarked).toMatchObject({ DeleteMarker: true, VersionId: marked.VersionId });
      const back = await client.send(new GetObjectCommand(target));
      expect(await back.Body?.transformToString()).toBe('kept bytes');
      expect(back).toMatchObject({ VersionId: v1.VersionId, ETag: v1.ETag, LastModified: T0 });
      const after = await client.send(
        new ListObjectVersionsCommand({ Bucket: versioned, Prefix: 'marked' }),
      );
      expect(after.DeleteMarkers).toBeUndefined();
      expect(after.Versions?.map((version) => [version.VersionId, version.IsLatest])).toEqual([
        [v1.VersionId, true],
      ]);
    });

    it('answers 405 for a delete marker and NoSuchVersion for an unknown version id', async () => {
      // Prepare
      const target = { Bucket: versioned, Key: 'gone.txt' };
      await client.send(new PutObjectCommand({ ...target, Body: 'x' }));
      const marked = await client.send(new DeleteObjectCommand(target));
      // Act
      const marker = await failure(
        client.send(new HeadObjectCommand({ ...target, VersionId: marked.VersionId })),
      );
      const unknown = await failure(
        client.send(new GetObjectCommand({ ...target, VersionId: 'A'.repeat(32) })),
      );
      // Assess
      expect(marker).toMatchObject({ $metadata: { httpStatusCode: 405 } });
      expect(unknown).toMatchObject({ name: 'NoSuchVersion', $metadata: { httpStatusCode: 404 } });
    });

    it('answers a version id for CopyObject into a versioned bucket and keeps the copied-over version', async () => {
      // Prepare
      const target = { Bucket: versioned, Key: 'copied.txt' };
      const first = await client.send(new PutObjectCommand({ ...target, Body: 'first' }));
      await client.send(new PutObjectCommand({ Bucket: versioned, Key: 'src.txt', Body: 'src' }));
      // Act
      const copied = await client.send(
        new CopyObjectCommand({ ...target, CopySource: `${versioned}/src.txt` }),
      );
      // Assess
      expect(copied.VersionId).toMatch(/^[\w-]{32}$/);
      const current = await client.send(new HeadObjectCommand(target));
      expect(current.VersionId).toBe(copied.VersionId);
      const kept = await client.send(
        new GetObjectCommand({ ...target, VersionId: first.VersionId }),
      );
      expect(await kept.Body?.transformToString()).toBe('first');
    });

    it('refuses to delete a bucket that still keeps versions', async () => {
      // Prepare
      const target = { Bucket: versioned, Key: 'only-versions.txt' };
      await client.send(new PutObjectCommand({ ...target, Body: 'x' }));
      await client.send(new DeleteObjectCommand(target));
      // Act
      const error = await failure(client.send(new DeleteBucketCommand({ Bucket: versioned })));
      // Assess
      expect(error).toMatchObject({ name: 'BucketNotEmpty', $metadata: { httpStatusCode: 409 } });
    });

    it('leaves an unversioned bucket unversioned: no version ids, and a delete removes the object', async () => {
      // Prepare
      const plain = uniqueName('plain');
      await client.send(new CreateBucketCommand({ Bucket: plain }));
      // Act
      const put = await client.send(new PutObjectCommand({ Bucket: plain, Key: 'k', Body: 'x' }));
      const removed = await client.send(new DeleteObjectCommand({ Bucket: plain, Key: 'k' }));
      // Assess
      expect(put.VersionId).toBeUndefined();
      expect(removed.DeleteMarker).toBeUndefined();
      expect(removed.VersionId).toBeUndefined();
      const versions = await client.send(new ListObjectVersionsCommand({ Bucket: plain }));
      expect(versions.Versions ?? []).toEqual([]);
      expect(versions.DeleteMarkers ?? []).toEqual([]);
    });

    it('accepts any of a list of access key ids and refuses others', async () => {
      // Prepare
      const listed = await startS3Emulator({
        accessKeyId: ['AKIAFIRST00000000001', 'AKIASECOND0000000002'],
      });
      try {
        const name = uniqueName('keys');
        // Act
        await clientOf(listed, 'AKIAFIRST00000000001').send(
          new CreateBucketCommand({ Bucket: name }),
        );
        await clientOf(listed, 'AKIASECOND0000000002').send(
          new PutObjectCommand({ Bucket: name, Key: 'k', Body: 'x' }),
        );
        const error = await failure(
          clientOf(listed, 'AKIATHIRD00000000003').send(
            new PutObjectCommand({ Bucket: name, Key: 'k', Body: 'y' }),
          ),
        );
        // Assess
        expect(error).toMatchObject({
          name: 'InvalidAccessKeyId',
          $metadata: { httpStatusCode: 403 },
        });
      } finally {
        await listed.close();
      }
    });
  });
});
