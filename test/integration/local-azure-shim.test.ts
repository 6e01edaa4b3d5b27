import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import {
  CreateBucketCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  AnonymousCredential,
  BlobSASPermissions,
  BlobServiceClient,
  BlockBlobClient,
  type ContainerClient,
  generateAccountSASQueryParameters,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  emulatorEnv,
  makeBlobServiceClient,
  makeS3Client,
  uniqueName,
} from '../support/emulators.ts';

interface RestErrorShape {
  statusCode?: number;
  code?: string;
  details?: { errorCode?: string; copySourceStatusCode?: number; copySourceErrorCode?: string };
  response?: { headers: { get(name: string): string | undefined } };
}

/** The error a promise rejects with, to assert on its status and code. */
async function failure(promise: Promise<unknown>): Promise<RestErrorShape> {
  try {
    await promise;
  } catch (error) {
    return error as RestErrorShape;
  }
  throw new Error('expected the request to fail, and it succeeded');
}

const md5 = (body: Buffer) => createHash('md5').update(body).digest();

let s3: S3Client;
let bucket: string;
let container: ContainerClient;

beforeAll(async () => {
  s3 = makeS3Client();
  bucket = uniqueName('shimsrc');
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  container = makeBlobServiceClient().getContainerClient(uniqueName('shim'));
  await container.create();
});

/** Puts `body` into the S3 emulator and returns a presigned GET URL for it. */
async function s3Source(key: string, body: Buffer, properties: object = {}): Promise<string> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ...properties }));
  return presign(key);
}

function presign(key: string): Promise<string> {
  return getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: 300 });
}

/** The shim's account with credentials that Azure would not accept, or none. */
function clientWith(credential: StorageSharedKeyCredential | AnonymousCredential): ContainerClient {
  return new BlobServiceClient(emulatorEnv().azureAccountUrl, credential).getContainerClient(
    container.containerName,
  );
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address ? address.port : 0;
}

describe('Class: Azure shim', () => {
  describe('Put Block From URL', () => {
    it('stages ranges of a presigned S3 URL as blocks, and the committed blob is byte-identical', async () => {
      // Prepare
      const body = randomBytes(3 * 1024 * 1024 + 123);
      const url = await s3Source('pull/blocks', body);
      const blob = container.getBlockBlobClient('pull/blocks');
      const size = 1024 * 1024;
      const ids: string[] = [];
      // Act
      for (let offset = 0, n = 0; offset < body.length; offset += size, n++) {
        const id = Buffer.from(`block-${String(n).padStart(4, '0')}`).toString('base64');
        await blob.stageBlockFromURL(id, url, offset, Math.min(size, body.length - offset));
        ids.push(id);
      }
      await blob.commitBlockList(ids);
      // Assess
      expect(md5(await blob.downloadToBuffer())).toEqual(md5(body));
    });

    it('takes the range out of a source that ignores Range and sends no Content-Length', async () => {
      // Prepare: a plain web server that always answers 200 with the whole body, chunked.
      const body = randomBytes(50_000);
      const server = http.createServer((_request, response) => {
        response.writeHead(200, { 'content-type': 'application/octet-stream' });
        response.write(body.subarray(0, 20_000));
        response.end(body.subarray(20_000));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const address = server.address();
      const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/file`;
      const blob = container.getBlockBlobClient('pull/ignores-range');
      const id = Buffer.from('plain-0001').toString('base64');
      try {
        // Act
        const staged = await blob.stageBlockFromURL(id, url, 15_000, 10_000);
        await blob.commitBlockList([id]);
        // Assess
        expect(Buffer.from(staged.contentMD5 ?? [])).toEqual(md5(body.subarray(15_000, 25_000)));
        expect(md5(await blob.downloadToBuffer())).toEqual(md5(body.subarray(15_000, 25_000)));
      } finally {
        server.closeAllConnections();
        server.close();
      }
    });

    it("answers with the staged block's Content-MD5", async () => {
      const body = randomBytes(5000);
      const url = await s3Source('pull/md5', body);
      const staged = await container
        .getBlockBlobClient('pull/md5')
        .stageBlockFromURL(Buffer.from('md5-0001').toString('base64'), url, 1000, 2000);
      expect(Buffer.from(staged.contentMD5 ?? [])).toEqual(md5(body.subarray(1000, 3000)));
      expect(staged.isServerEncrypted).toBe(true);
    });

    it('checks x-ms-source-content-md5 against the source range (400 Md5Mismatch)', async () => {
      // Prepare
      const body = randomBytes(2000);
      const url = await s3Source('pull/source-md5', body);
      const blob = container.getBlockBlobClient('pull/source-md5');
      const id = Buffer.from('smd5-0001').toString('base64');
      // Act
      const wrong = await failure(
        blob.stageBlockFromURL(id, url, 0, 1000, { sourceContentMD5: md5(body) }),
      );
      await blob.stageBlockFromURL(id, url, 0, 1000, {
        sourceContentMD5: md5(body.subarray(0, 1000)),
      });
      // Assess
      expect(wrong).toMatchObject({ statusCode: 400, code: 'Md5Mismatch' });
      const list = await blob.getBlockList('uncommitted');
      expect(list.uncommittedBlocks).toEqual([{ name: id, size: 1000 }]);
    });

    it("answers a source that 404s with CannotVerifyCopySource and the source's status", async () => {
      const url = await presign('pull/does-not-exist');
      const error = await failure(
        container
          .getBlockBlobClient('pull/nothing')
          .stageBlockFromURL(Buffer.from('none-0001').toString('base64'), url, 0, 10),
      );
      expect(error).toMatchObject({ statusCode: 404, code: 'CannotVerifyCopySource' });
      expect(error.response?.headers.get('x-ms-copy-source-status-code')).toBe('404');
      expect(error.response?.headers.get('x-ms-copy-source-error-code')).toBe('NoSuchKey');
    });

    it('answers a source that cannot be reached with 500 CannotVerifyCopySource', async () => {
      const once = BlobServiceClient.fromConnectionString(emulatorEnv().azureConnectionString, {
        retryOptions: { maxTries: 1 },
      }).getContainerClient(container.containerName);
      const error = await failure(
        once
          .getBlockBlobClient('pull/unreachable')
          .stageBlockFromURL(
            Buffer.from('gone-0001').toString('base64'),
            `http://127.0.0.1:${await closedPort()}/${bucket}/x`,
            0,
            10,
          ),
      );
      expect(error).toMatchObject({ statusCode: 500, code: 'CannotVerifyCopySource' });
    });
  });

  describe('Put Blob From URL', () => {
    it('writes the whole source with the properties and metadata of the request', async () => {
      // Prepare
      const body = randomBytes(100_000);
      const url = await s3Source('put/whole', body, { ContentType: 'application/x-source' });
      const blob = container.getBlockBlobClient('put/whole');
      // Act
      const written = await blob.syncUploadFromURL(url, {
        blobHTTPHeaders: {
          blobContentType: 'text/csv',
          blobContentEncoding: 'gzip',
          blobContentLanguage: 'en-GB',
          blobContentDisposition: 'attachment; filename="x.csv"',
          blobCacheControl: 'no-cache',
        },
        metadata: { origin_side: 's3', origin_etag: 'abc' },
        copySourceBlobProperties: false,
      });
      // Assess
      const properties = await blob.getProperties();
      expect(properties).toMatchObject({
        etag: written.etag,
        contentLength: body.length,
        contentType: 'text/csv',
        contentEncoding: 'gzip',
        contentLanguage: 'en-GB',
        contentDisposition: 'attachment; filename="x.csv"',
        cacheControl: 'no-cache',
        metadata: { origin_side: 's3', origin_etag: 'abc' },
      });
      expect(md5(await blob.downloadToBuffer())).toEqual(md5(body));
    });

    it("takes the source's content properties where the request sets none, as Azure does by default", async () => {
      const url = await s3Source('put/props', Buffer.from('a,b\n'), {
        ContentType: 'text/csv',
        ContentLanguage: 'fr',
      });
      const blob = container.getBlockBlobClient('put/props');
      await blob.syncUploadFromURL(url, { blobHTTPHeaders: { blobContentLanguage: 'de' } });
      expect(await blob.getProperties()).toMatchObject({
        contentType: 'text/csv',
        contentLanguage: 'de',
      });
    });

    it('honours the destination conditions (409 BlobAlreadyExists, 412 ConditionNotMet)', async () => {
      // Prepare
      const blob = container.getBlockBlobClient('put/conditions');
      const existing = await blob.upload('keep me', 7);
      const url = await s3Source('put/conditions', Buffer.from('replacement'));
      // Act
      const absent = await failure(
        blob.syncUploadFromURL(url, { conditions: { ifNoneMatch: '*' } }),
      );
      const stale = await failure(
        blob.syncUploadFromURL(url, { conditions: { ifMatch: '"0x8D0000000000000"' } }),
      );
      const before = (await blob.downloadToBuffer()).toString();
      await blob.syncUploadFromURL(url, { conditions: { ifMatch: existing.etag ?? '' } });
      // Assess
      expect(absent).toMatchObject({ statusCode: 409, code: 'BlobAlreadyExists' });
      expect(stale).toMatchObject({ statusCode: 412, code: 'ConditionNotMet' });
      expect(before).toBe('keep me');
      expect((await blob.downloadToBuffer()).toString()).toBe('replacement');
    });

    it('honours x-ms-source-if-match on the source (412 SourceConditionNotMet)', async () => {
      // Prepare
      const put = await s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: 'put/source-cond', Body: 'v1' }),
      );
      const url = await presign('put/source-cond');
      const blob = container.getBlockBlobClient('put/source-cond');
      // Act
      const stale = await failure(
        blob.syncUploadFromURL(url, {
          sourceConditions: { ifMatch: '"ffffffffffffffffffffffffffffffff"' },
        }),
      );
      await blob.syncUploadFromURL(url, { sourceConditions: { ifMatch: put.ETag ?? '' } });
      // Assess
      expect(stale).toMatchObject({ statusCode: 412, code: 'SourceConditionNotMet' });
      expect((await blob.downloadToBuffer()).toString()).toBe('v1');
    });

    it("answers a source that 404s with CannotVerifyCopySource and the source's status", async () => {
      const error = await failure(
        container
          .getBlockBlobClient('put/nothing')
          .syncUploadFromURL(await presign('put/does-not-exist')),
      );
      expect(error).toMatchObject({ statusCode: 404, code: 'CannotVerifyCopySource' });
      expect(await container.getBlockBlobClient('put/nothing').exists()).toBe(false);
    });
  });

  describe('authentication', () => {
    it('refuses a request signed with another key with 403 AuthenticationFailed', async () => {
      const env = emulatorEnv();
      const forged = clientWith(
        new StorageSharedKeyCredential(env.azureAccountName, randomBytes(64).toString('base64')),
      );
      const url = await s3Source('auth/forged', Buffer.from('x'));
      const error = await failure(forged.getBlockBlobClient('auth/forged').syncUploadFromURL(url));
      expect(error).toMatchObject({ statusCode: 403, code: 'AuthenticationFailed' });
      expect(await container.getBlockBlobClient('auth/forged').exists()).toBe(false);
    });

    it('answers any other request with a wrong key or a spent SAS 403 AuthenticationFailed, as Azure does', async () => {
      // Azurite itself answers these 403 AuthorizationFailure; a client that renews a rotated
      // credential on AuthenticationFailed must see what Azure sends.
      const env = emulatorEnv();
      const credential = new StorageSharedKeyCredential(env.azureAccountName, env.azureAccountKey);
      const blob = container.getBlockBlobClient('auth/plain');
      await blob.upload('plain', 5);
      const sas = (permissions: string, expiresOn: Date) =>
        `${blob.url}?${generateBlobSASQueryParameters(
          {
            containerName: container.containerName,
            blobName: 'auth/plain',
            permissions: BlobSASPermissions.parse(permissions),
            expiresOn,
          },
          credential,
        ).toString()}`;
      const wrongKey = clientWith(
        new StorageSharedKeyCredential(env.azureAccountName, randomBytes(64).toString('base64')),
      ).getBlockBlobClient('auth/plain');

      const refusedKey = await failure(wrongKey.getProperties());
      const refusedSas = await failure(
        new BlockBlobClient(sas('r', new Date(Date.now() - 60_000))).getProperties(),
      );
      const refusedPermission = await failure(
        new BlockBlobClient(sas('r', new Date(Date.now() + 3_600_000))).upload('x', 1),
      );

      // A HEAD has no body: the code is in x-ms-error-code only.
      const authenticationFailed = {
        statusCode: 403,
        details: { errorCode: 'AuthenticationFailed' },
      };
      expect(refusedKey).toMatchObject(authenticationFailed);
      expect(refusedSas).toMatchObject(authenticationFailed);
      // A valid SAS without the permission is not a credential failure: Azurite's answer stands.
      expect(refusedPermission).toMatchObject({ statusCode: 403 });
      expect(refusedPermission.code).not.toBe('AuthenticationFailed');
      expect((await blob.downloadToBuffer()).toString()).toBe('plain');
    });

    it('refuses a request without credentials with 401 NoAuthenticationInformation', async () => {
      const url = await s3Source('auth/anonymous', Buffer.from('x'));
      const error = await failure(
        clientWith(new AnonymousCredential())
          .getBlockBlobClient('auth/anonymous')
          .stageBlockFromURL(Buffer.from('anon-0001').toString('base64'), url, 0, 1),
      );
      expect(error).toMatchObject({ statusCode: 401, code: 'NoAuthenticationInformation' });
    });

    it('accepts a blob SAS signed with the account key, and refuses it tampered, expired or read-only', async () => {
      // Prepare
      const env = emulatorEnv();
      const credential = new StorageSharedKeyCredential(env.azureAccountName, env.azureAccountKey);
      const sas = (permissions: string, expiresOn: Date) =>
        generateBlobSASQueryParameters(
          {
            containerName: container.containerName,
            blobName: 'auth/sas',
            permissions: BlobSASPermissions.parse(permissions),
            expiresOn,
          },
          credential,
        ).toString();
      const blobUrl = `${env.azureAccountUrl}/${container.containerName}/auth/sas`;
      const withSas = (query: string) => new BlockBlobClient(`${blobUrl}?${query}`);
      const source = await s3Source('auth/sas', Buffer.from('via sas'));
      const later = new Date(Date.now() + 3_600_000);
      const good = sas('cw', later);
      const tampered = good.replace(
        /sig=[^&]+/,
        `sig=${encodeURIComponent(randomBytes(32).toString('base64'))}`,
      );
      // Act
      const refusedTampered = await failure(withSas(tampered).syncUploadFromURL(source));
      const refusedExpired = await failure(
        withSas(sas('cw', new Date(Date.now() - 60_000))).syncUploadFromURL(source),
      );
      const refusedReadOnly = await failure(withSas(sas('r', later)).syncUploadFromURL(source));
      await withSas(good).syncUploadFromURL(source);
      // Assess
      expect(refusedTampered).toMatchObject({ statusCode: 403, code: 'AuthenticationFailed' });
      expect(refusedExpired).toMatchObject({ statusCode: 403, code: 'AuthenticationFailed' });
      expect(refusedReadOnly).toMatchObject({
        statusCode: 403,
        code: 'AuthorizationPermissionMismatch',
      });
      expect((await container.getBlockBlobClient('auth/sas').downloadToBuffer()).toString()).toBe(
        'via sas',
      );
    });

    it('accepts an account SAS signed with the account key', async () => {
      const env = emulatorEnv();
      const query = generateAccountSASQueryParameters(
        {
          services: AccountSASServices.parse('b').toString(),
          resourceTypes: AccountSASResourceTypes.parse('o').toString(),
          permissions: AccountSASPermissions.parse('w'),
          expiresOn: new Date(Date.now() + 3_600_000),
        },
        new StorageSharedKeyCredential(env.azureAccountName, env.azureAccountKey),
      ).toString();
      const body = randomBytes(300);
      const source = await s3Source('auth/account-sas', body);
      const blob = new BlockBlobClient(
        `${env.azureAccountUrl}/${container.containerName}/auth/account-sas?${query}`,
      );
      const id = Buffer.from('acct-0001').toString('base64');
      await blob.stageBlockFromURL(id, source, 0, body.length);
      await container.getBlockBlobClient('auth/account-sas').commitBlockList([id]);
      expect(
        md5(await container.getBlockBlobClient('auth/account-sas').downloadToBuffer()),
      ).toEqual(md5(body));
    });
  });

  describe('pass-through', () => {
    it('passes ordinary blob operations through to Azurite unchanged', async () => {
      // Prepare
      const body = randomBytes(2 * 1024 * 1024 + 7);
      const blob = container.getBlockBlobClient('through/plain');
      // Act
      await blob.uploadData(body, {
        metadata: { a: '1' },
        blobHTTPHeaders: { blobContentType: 'x/y' },
      });
      const ranged = await blob.downloadToBuffer(1000, 500);
      const properties = await blob.getProperties();
      const names: string[] = [];
      for await (const item of container.listBlobsFlat({ prefix: 'through/' }))
        names.push(item.name);
      await blob.setMetadata({ b: '2' });
      const after = await blob.getProperties();
      const deleted = await container.getBlockBlobClient('through/plain').deleteIfExists();
      // Assess
      expect(ranged).toEqual(body.subarray(1000, 1500));
      expect(properties).toMatchObject({
        contentLength: body.length,
        contentType: 'x/y',
        metadata: { a: '1' },
      });
      expect(names).toEqual(['through/plain']);
      expect(after.metadata).toEqual({ b: '2' });
      expect(deleted.succeeded).toBe(true);
    });

    it('passes Copy Blob (x-ms-copy-source without a blob type) through, with a source on the shim', async () => {
      // Prepare
      const source = container.getBlockBlobClient('through/copy-source');
      await source.upload('copied by Azurite', 17);
      const sourceUrl = await source.generateSasUrl({
        permissions: BlobSASPermissions.parse('r'),
        expiresOn: new Date(Date.now() + 3_600_000),
      });
      const target = container.getBlockBlobClient('through/copy-target');
      // Act
      const poller = await target.beginCopyFromURL(sourceUrl);
      const copied = await poller.pollUntilDone();
      // Assess
      expect(copied.copyStatus).toBe('success');
      expect((await target.downloadToBuffer()).toString()).toBe('copied by Azurite');
    });
  });
});
