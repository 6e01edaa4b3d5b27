import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { AnonymousCredential, ContainerClient } from '@azure/storage-blob';
import { beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, PreconditionFailedError, ReplicatorError } from '../../src/errors.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { type ObjectStore, readsSmall } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import { makeBlobServiceClient, makeS3Client, uniqueName } from '../support/emulators.ts';
import { readAll } from '../support/streams.ts';

const MiB = 1024 * 1024;

interface StoreFactory {
  name: string;
  create(): Promise<ObjectStore>;
  missing(): ObjectStore;
  /** Smallest part the store accepts for all but the last part. */
  partSize: number;
}

const factories: StoreFactory[] = [
  {
    name: 'S3ObjectStore',
    partSize: 5 * MiB,
    async create() {
      const client = makeS3Client();
      const bucket = uniqueName('contract');
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      return new S3ObjectStore(client, bucket);
    },
    missing: () => new S3ObjectStore(makeS3Client(), uniqueName('missing')),
  },
  {
    name: 'AzureBlobObjectStore',
    partSize: 1 * MiB,
    async create() {
      const container = makeBlobServiceClient().getContainerClient(uniqueName('contract'));
      await container.create();
      return new AzureBlobObjectStore(container);
    },
    missing: () =>
      new AzureBlobObjectStore(makeBlobServiceClient().getContainerClient(uniqueName('missing'))),
  },
];

const md5 = (data: Buffer) => createHash('md5').update(data).digest();

describe.each(factories)('Contract: ObjectStore ($name)', (factory) => {
  let store: ObjectStore;
  const write = { properties: {}, metadata: {}, condition: { kind: 'any' as const } };

  beforeAll(async () => {
    store = await factory.create();
  });

  it('answers head with undefined for a missing object', async () => {
    expect(await store.head('no/such/object')).toBeUndefined();
  });

  it('puts an object and heads it with size, eTag, properties and metadata', async () => {
    // Prepare
    const body = randomBytes(1234);
    // Act
    const put = await store.put('props/one', body, {
      properties: {
        contentType: 'text/csv',
        contentEncoding: 'gzip',
        contentLanguage: 'de-DE',
        contentDisposition: 'attachment; filename="one.csv"',
        cacheControl: 'max-age=60',
      },
      metadata: { color: 'blue', owner_team: 'data' },
      condition: { kind: 'absent' },
      md5: md5(body),
    });
    const head = await store.head('props/one');
    // Assess
    expect(head).toMatchObject({
      key: 'props/one',
      size: 1234,
      etag: put.etag,
      properties: {
        contentType: 'text/csv',
        contentEncoding: 'gzip',
        contentLanguage: 'de-DE',
        contentDisposition: 'attachment; filename="one.csv"',
        cacheControl: 'max-age=60',
      },
      metadata: { color: 'blue', owner_team: 'data' },
    });
  });

  it('refuses a put whose MD5 does not match the body, and stores nothing', async () => {
    const body = randomBytes(100);
    const error = await store
      .put('digest/bad', body, { ...write, md5: md5(Buffer.from('other')) })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReplicatorError);
    expect(await store.head('digest/bad')).toBeUndefined();
  });

  it('honours If-None-Match: * and If-Match on put', async () => {
    const first = await store.put('cond/key', Buffer.from('v1'), {
      ...write,
      condition: { kind: 'absent' },
    });
    await expect(
      store.put('cond/key', Buffer.from('v2'), { ...write, condition: { kind: 'absent' } }),
    ).rejects.toBeInstanceOf(PreconditionFailedError);
    await expect(
      store.put('cond/key', Buffer.from('v2'), {
        ...write,
        condition: { kind: 'match', etag: '"0000"' },
      }),
    ).rejects.toBeInstanceOf(PreconditionFailedError);
    const second = await store.put('cond/key', Buffer.from('v3'), {
      ...write,
      condition: { kind: 'match', etag: first.etag },
    });
    expect(second.etag).not.toBe(first.etag);
    expect((await readAll((await store.get('cond/key')).body)).toString()).toBe('v3');
  });

  it('treats a write conditional on an object that is gone as a failed precondition', async () => {
    const { etag } = await store.put('cond/gone', Buffer.from('x'), write);
    await store.delete('cond/gone');
    await expect(
      store.put('cond/gone', Buffer.from('y'), { ...write, condition: { kind: 'match', etag } }),
    ).rejects.toBeInstanceOf(PreconditionFailedError);
  });

  it('reads a range, conditional on the eTag', async () => {
    const body = randomBytes(4096);
    const { etag } = await store.put('range/key', body, write);
    const part = await store.get('range/key', { range: { start: 100, end: 1099 }, ifMatch: etag });
    expect(part.contentLength).toBe(1000);
    expect((await readAll(part.body)).equals(body.subarray(100, 1100))).toBe(true);
    await expect(
      store.get('range/key', { range: { start: 0, end: 9 }, ifMatch: '"stale"' }),
    ).rejects.toBeInstanceOf(PreconditionFailedError);
  });

  it('classifies a missing object on get as not-found', async () => {
    await expect(store.get('no/such/object')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('stages parts, lists what is staged, and commits them with properties and metadata', async () => {
    // Prepare
    const a = randomBytes(factory.partSize);
    const b = randomBytes(777);
    const options = {
      properties: { contentType: 'application/x-test', cacheControl: 'no-cache' },
      metadata: { stage: 'yes' },
      condition: { kind: 'absent' as const },
    };
    const upload = await store.beginStaged('staged/key', options, 'abcdef0123456789');
    // Act
    const partB = await store.stagePart(upload, 2, b, { md5: md5(b) });
    const partA = await store.stagePart(upload, 1, a, { md5: md5(a) });
    const listed = await store.listStaged(upload);
    await store.commitStaged(upload, [partA, partB], {
      ...options,
      expectedSize: a.length + b.length,
    });
    // Assess
    expect(listed.map((p) => [p.partNumber, p.size]).sort()).toEqual(
      [
        [1, a.length],
        [2, b.length],
      ].sort(),
    );
    const head = await store.head('staged/key');
    expect(head).toMatchObject({
      size: a.length + b.length,
      properties: { contentType: 'application/x-test', cacheControl: 'no-cache' },
      metadata: { stage: 'yes' },
    });
    const all = await readAll((await store.get('staged/key')).body);
    expect(all.equals(Buffer.concat([a, b]))).toBe(true);
  });

  it('refuses a staged commit whose parts do not add up to the expected size', async () => {
    const a = randomBytes(2048);
    const upload = await store.beginStaged('staged/size', write, '0123456789abcdef');
    const part = await store.stagePart(upload, 1, a, { md5: md5(a) });
    await expect(
      store.commitStaged(upload, [part], { ...write, expectedSize: a.length + 1 }),
    ).rejects.toBeInstanceOf(ReplicatorError);
    expect(await store.head('staged/size')).toBeUndefined();
  });

  it('refuses a staged commit whose condition no longer holds', async () => {
    await store.put('staged/cond', Buffer.from('exists'), write);
    const a = randomBytes(10);
    const upload = await store.beginStaged('staged/cond', write, 'fedcba9876543210');
    const part = await store.stagePart(upload, 1, a, { md5: md5(a) });
    await expect(
      store.commitStaged(upload, [part], {
        ...write,
        condition: { kind: 'absent' },
        expectedSize: a.length,
      }),
    ).rejects.toBeInstanceOf(PreconditionFailedError);
    expect((await readAll((await store.get('staged/cond')).body)).toString()).toBe('exists');
  });

  it('deletes an object, and a missing one without error', async () => {
    await store.put('del/key', Buffer.from('x'), write);
    await store.delete('del/key');
    expect(await store.head('del/key')).toBeUndefined();
    await expect(store.delete('del/key')).resolves.toBeUndefined();
  });

  it('deletes only on a matching eTag when asked to', async () => {
    const { etag } = await store.put('del/cond', Buffer.from('x'), write);
    await expect(
      store.delete('del/cond', { condition: { kind: 'match', etag: '"stale"' } }),
    ).rejects.toBeInstanceOf(PreconditionFailedError);
    expect(await store.head('del/cond')).toBeDefined();
    await store.delete('del/cond', { condition: { kind: 'match', etag } });
    expect(await store.head('del/cond')).toBeUndefined();
  });

  it('lists a prefix page by page', async () => {
    for (const name of ['a', 'b', 'c', 'd', 'e']) {
      await store.put(`list/${name}`, Buffer.from(name), write);
    }
    await store.put('listing-other', Buffer.from('x'), write);
    const keys: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await store.list('list/', {
        maxResults: 2,
        ...(token !== undefined && { continuationToken: token }),
      });
      keys.push(...page.items.map((item) => item.key));
      token = page.continuationToken;
      pages += 1;
    } while (token !== undefined);
    expect(keys).toEqual(['list/a', 'list/b', 'list/c', 'list/d', 'list/e']);
    expect(pages).toBe(3);
  });

  it('lists what HEAD says, and the metadata where the listing carries it', async () => {
    const body = Buffer.from('listed with metadata');
    const put = await store.put('meta/one', body, {
      ...write,
      metadata: { color: 'blue', s3az_origin: 's3' },
      md5: md5(body),
    });
    const head = await store.head('meta/one');
    const plain = (await store.list('meta/')).items[0];
    const [item] = (await store.list('meta/', { metadata: true })).items;
    expect(item).toMatchObject({ key: 'meta/one', size: body.length, etag: put.etag });
    // HEAD's Last-Modified is whole seconds; a listing may have milliseconds (the emulator).
    const second = (date: Date | undefined) => Math.floor((date?.getTime() ?? 0) / 1000);
    expect(second(item?.lastModified)).toBe(second(head?.lastModified));
    expect(plain?.metadata).toBeUndefined();
    // S3's ListObjectsV2 carries no user metadata; Azure's List Blobs does (include=metadata),
    // with the Content-MD5 that HEAD shows.
    if (store.side === 'azure') {
      expect(item?.metadata).toEqual(head?.metadata);
      expect(item?.contentMd5).toBe(head?.contentMd5);
    } else expect(item?.metadata).toBeUndefined();
  });

  it('reads a small object whole with what HEAD says of it, in one GET', async () => {
    if (!readsSmall(store)) throw new Error(`${factory.name} does not read small objects`);
    const body = randomBytes(1000);
    await store.put('small/whole.bin', body, {
      ...write,
      properties: { contentType: 'text/x-small', cacheControl: 'no-cache' },
      metadata: { note: 'one-get' },
    });
    const read = await store.getSmall('small/whole.bin', 1000);
    expect(read?.body?.equals(body)).toBe(true);
    expect(read?.head).toEqual(await store.head('small/whole.bin'));
    // Larger than asked for: the head alone.
    const large = await store.getSmall('small/whole.bin', 999);
    expect(large?.body).toBeUndefined();
    expect(large?.head.size).toBe(1000);
    expect(await store.getSmall('small/none.bin', 1000)).toBeUndefined();
    const missing = factory.missing();
    if (!readsSmall(missing)) throw new Error('unreachable');
    await expect(missing.getSmall('small/whole.bin', 1000)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('says a missing bucket or container does not exist', async () => {
    await expect(factory.missing().checkContainer()).rejects.toThrow(/does not exist/);
    await expect(factory.missing().checkContainer()).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('AzureBlobObjectStore: client request ids', () => {
  /** The x-ms-client-request-id of each request a store sends to a server that answers 404. */
  async function requestIdsOf(options: { replicaWrites?: boolean }) {
    const seen: string[] = [];
    const server = http.createServer((request, response) => {
      seen.push(String(request.headers['x-ms-client-request-id'] ?? ''));
      response.writeHead(404, { 'x-ms-error-code': 'BlobNotFound' }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const container = new ContainerClient(
        `http://127.0.0.1:${port}/devstoreaccount1/c`,
        new AnonymousCredential(),
        { retryOptions: { maxTries: 1 } },
      );
      const store = new AzureBlobObjectStore(container, options);
      expect(await store.head('a')).toBeUndefined();
      // Another store on the same container client is marked once, not twice.
      new AzureBlobObjectStore(container, options);
      await store.delete('b', { condition: { kind: 'any' } });
      return seen;
    } finally {
      server.close();
    }
  }

  it("marks every request of the replicator's stores with its prefix", async () => {
    const ids = await requestIdsOf({ replicaWrites: true });
    expect(ids).toHaveLength(2);
    for (const id of ids) expect(id).toMatch(/^s3az-replicator-[0-9a-f-]{36}$/);
  });

  it("leaves other stores' request ids to the SDK", async () => {
    const ids = await requestIdsOf({});
    expect(ids).toHaveLength(2);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('AzureBlobObjectStore: snapshots', () => {
  let container: ContainerClient;
  let store: AzureBlobObjectStore;

  beforeAll(async () => {
    container = makeBlobServiceClient().getContainerClient(uniqueName('snapshots'));
    await container.create();
    store = new AzureBlobObjectStore(container);
  });

  /** A blob with one snapshot, as a user's backup tool or Azure Backup leaves it. */
  async function blobWithSnapshot(key: string): Promise<string> {
    const { etag } = await store.put(key, Buffer.from('x'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    await container.getBlobClient(key).createSnapshot();
    return etag;
  }

  async function snapshotsOf(key: string): Promise<string[]> {
    const names: string[] = [];
    for await (const blob of container.listBlobsFlat({ prefix: key, includeSnapshots: true })) {
      if (blob.name === key) names.push(blob.snapshot ?? '');
    }
    return names;
  }

  it('deletes a blob that has snapshots, and its snapshots with it', async () => {
    // Prepare
    await blobWithSnapshot('snap/plain');
    // Act
    await store.delete('snap/plain');
    // Assess
    expect(await store.head('snap/plain')).toBeUndefined();
    expect(await snapshotsOf('snap/plain')).toEqual([]);
  });

  it('deletes a blob that has snapshots only on a matching eTag when asked to', async () => {
    // Prepare
    const etag = await blobWithSnapshot('snap/cond');
    // Act
    const stale = await store
      .delete('snap/cond', { condition: { kind: 'match', etag: '"stale"' } })
      .catch((e: unknown) => e);
    const kept = await store.head('snap/cond');
    await store.delete('snap/cond', { condition: { kind: 'match', etag } });
    // Assess
    expect(stale).toBeInstanceOf(PreconditionFailedError);
    expect(kept).toBeDefined();
    expect(await store.head('snap/cond')).toBeUndefined();
    expect(await snapshotsOf('snap/cond')).toEqual([]);
  });
});
