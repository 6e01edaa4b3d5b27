import { createHash, randomBytes } from 'node:crypto';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  emulatorEnv,
  makeBlobServiceClient,
  makeS3Client,
  uniqueName,
} from '../support/emulators.ts';

let s3: S3Client;
let bucket: string;

beforeAll(async () => {
  s3 = makeS3Client();
  bucket = uniqueName('local');
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
});

describe('Class: S3 emulator fidelity', () => {
  it('refuses a checksum that does not match the body, and stores nothing', async () => {
    const body = Buffer.from('hello');
    const wrong = Buffer.alloc(4).toString('base64');
    const error = await s3
      .send(new PutObjectCommand({ Bucket: bucket, Key: 'crc', Body: body, ChecksumCRC32: wrong }))
      .catch((e: { name?: string }) => e);
    expect(error).toMatchObject({ name: 'BadDigest' });
    await expect(
      s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'crc' })),
    ).rejects.toMatchObject({
      name: 'NotFound',
    });
  });

  it('refuses a request signed with an unknown access key', async () => {
    const env = emulatorEnv();
    const stranger = new S3Client({
      endpoint: env.s3Endpoint,
      forcePathStyle: true,
      region: env.region,
      credentials: { accessKeyId: 'AKIAUNKNOWN000000000', secretAccessKey: 'x' },
    });
    await expect(
      stranger.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'x' })),
    ).rejects.toMatchObject({ name: 'InvalidAccessKeyId' });
  });

  it('answers NoSuchUpload for a part of an unknown upload', async () => {
    await expect(
      s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: 'k',
          UploadId: 'nope',
          PartNumber: 1,
          Body: 'x',
        }),
      ),
    ).rejects.toMatchObject({ name: 'NoSuchUpload' });
  });

  it('keeps content properties of a multipart upload, and drops them on a plain overwrite', async () => {
    const created = await s3.send(
      new CreateMultipartUploadCommand({
        Bucket: bucket,
        Key: 'mpu',
        ContentDisposition: 'inline',
        ContentLanguage: 'en',
      }),
    );
    const part = await s3.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: 'mpu',
        UploadId: created.UploadId,
        PartNumber: 1,
        Body: 'only part',
      }),
    );
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: 'mpu',
        UploadId: created.UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
      }),
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'mpu' }));
    expect(head).toMatchObject({ ContentDisposition: 'inline', ContentLanguage: 'en' });
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'mpu', Body: 'plain' }));
    const after = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'mpu' }));
    expect(after.ContentDisposition).toBeUndefined();
    expect(after.ContentLanguage).toBeUndefined();
  });
});

describe('Class: Azure shim', () => {
  it('stages a block from a presigned S3 URL, as Azure does', async () => {
    const body = randomBytes(1000);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'src', Body: body }));
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: 'src' }), {
      expiresIn: 60,
    });
    const container = makeBlobServiceClient().getContainerClient(uniqueName('shim'));
    await container.create();
    const blob = container.getBlockBlobClient('dst');
    const id = Buffer.from('block-0001').toString('base64');
    await blob.stageBlockFromURL(id, url, 100, 500);
    await blob.commitBlockList([id]);
    const copied = await blob.downloadToBuffer();
    expect(createHash('md5').update(copied).digest('hex')).toBe(
      createHash('md5').update(body.subarray(100, 600)).digest('hex'),
    );
  });

  it('answers CannotVerifyCopySource with the source status for a source that fails', async () => {
    const container = makeBlobServiceClient().getContainerClient(uniqueName('shim'));
    await container.create();
    const missing = `${emulatorEnv().s3Endpoint}/${bucket}/does-not-exist`;
    const error = await container
      .getBlockBlobClient('dst')
      .syncUploadFromURL(missing)
      .catch((e: { statusCode?: number; code?: string }) => e);
    expect(error).toMatchObject({ statusCode: 404, code: 'CannotVerifyCopySource' });
  });

  it('refuses a pull request signed with the wrong key, without fetching', async () => {
    const env = emulatorEnv();
    const forged = new BlobServiceClient(
      env.azureAccountUrl,
      new StorageSharedKeyCredential(env.azureAccountName, randomBytes(64).toString('base64')),
    );
    const error = await forged
      .getContainerClient('anything')
      .getBlockBlobClient('dst')
      .syncUploadFromURL(`${env.s3Endpoint}/${bucket}/src`)
      .catch((e: { statusCode?: number; code?: string }) => e);
    expect(error).toMatchObject({ statusCode: 403, code: 'AuthenticationFailed' });
  });
});
