import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Transform } from 'node:stream';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type CopyCheckpoint, CopyStoppedError, copyObject } from '../../src/copy/copy-object.ts';
import { PullMemory } from '../../src/copy/pull-memory.ts';
import { readReplicaMarker } from '../../src/core/metadata.ts';
import {
  NotFoundError,
  PreconditionFailedError,
  PullUnsupportedError,
  RetryableError,
  UnrepresentableError,
} from '../../src/errors.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import type { ObjectStore } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import { countingParts } from '../support/counting-store.ts';
import {
  emulatorEnv,
  makeBlobServiceClient,
  makeS3Client,
  uniqueName,
} from '../support/emulators.ts';
import { putObject, readAll } from '../support/streams.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
// The emulators cap request bodies at 11 MiB; real deployments use larger parts.
const PART = 5 * MiB;

let s3: S3ObjectStore;
let azure: AzureBlobObjectStore;
let s3Client: ReturnType<typeof makeS3Client>;

beforeAll(async () => {
  s3Client = makeS3Client();
  const bucket = uniqueName('engine');
  await s3Client.send(new CreateBucketCommand({ Bucket: bucket }));
  s3 = new S3ObjectStore(s3Client, bucket);
  const container = makeBlobServiceClient().getContainerClient(uniqueName('engine'));
  await container.create();
  azure = new AzureBlobObjectStore(container);
});

async function content(store: ObjectStore, key: string): Promise<Buffer> {
  return readAll((await store.get(key)).body);
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

function copy(
  source: ObjectStore,
  sourceKey: string,
  destination: ObjectStore,
  destinationKey: string,
  extra: Partial<Parameters<typeof copyObject>[0]> = {},
) {
  return copyObject({
    source,
    sourceKey,
    destination,
    destinationKey,
    partSize: PART,
    concurrency: 4,
    pullMemory: new PullMemory(),
    ...extra,
  });
}

describe('Function: copyObject', () => {
  describe.each([
    ['0 B', 0],
    ['1 B', 1],
    ['part-1', PART - 1],
    ['part', PART],
    ['part+1', PART + 1],
    ['100 MiB', 100 * MiB],
  ])('round trip S3 -> Azure -> S3 of %s', (_label, size) => {
    it('is byte-identical both ways', async () => {
      // Prepare
      const body = randomBytes(size);
      const key = `sizes/${size}.bin`;
      await putObject(s3, key, body);
      // Act
      const there = await copy(s3, key, azure, key);
      const back = await copy(azure, key, s3, `${key}.back`);
      // Assess
      expect(there.size).toBe(size);
      expect(back.size).toBe(size);
      expect(sha(await content(azure, key))).toBe(sha(body));
      expect(sha(await content(s3, `${key}.back`))).toBe(sha(body));
      expect(there.mode).toBe(size > PART ? 'staged' : 'single');
      expect(there.transfer).toBe('pull');
      expect(back.transfer).toBe('stream');
    });
  });

  it.each([
    ['spaces', 'with spaces/a file.txt'],
    ['plus', 'a+b/c+d.txt'],
    ['percent', 'fifty%25off/100%.txt'],
    ['unicode', 'données/日本語/ファイル 🎉.txt'],
    ['deep paths', `${Array.from({ length: 40 }, (_, i) => `d${i}`).join('/')}/leaf`],
    ['1,024-byte names', `long/${'n'.repeat(1024 - 'long/'.length)}`],
  ])('round trips keys with %s', async (_label, key) => {
    const body = randomBytes(3 * KiB);
    await putObject(s3, key, body);
    await copy(s3, key, azure, key);
    await copy(azure, key, s3, `back/${key}`.slice(0, 1024));
    expect((await azure.head(key))?.key).toBe(key);
    expect(sha(await content(azure, key))).toBe(sha(body));
    expect(sha(await content(s3, `back/${key}`.slice(0, 1024)))).toBe(sha(body));
  });

  it('carries properties and user metadata across both ways and marks the replica', async () => {
    // Prepare
    const properties = {
      contentType: 'application/json',
      contentEncoding: 'gzip',
      contentLanguage: 'fr-CA',
      contentDisposition: 'attachment; filename="data.json"',
      cacheControl: 'public, max-age=300',
    };
    const put = await s3Client.send(
      new PutObjectCommand({
        Bucket: s3.container,
        Key: 'meta/object.json',
        Body: Buffer.from('{"a":1}'),
        ContentType: properties.contentType,
        ContentEncoding: properties.contentEncoding,
        ContentLanguage: properties.contentLanguage,
        ContentDisposition: properties.contentDisposition,
        CacheControl: properties.cacheControl,
        Metadata: { 'my-key': 'dash', 'my.dotted': 'dot', plain_name: 'plain', color: 'blue' },
      }),
    );
    // Act
    await copy(s3, 'meta/object.json', azure, 'meta/object.json');
    const onAzure = await azure.head('meta/object.json');
    await copy(azure, 'meta/object.json', s3, 'meta/back.json');
    const back = await s3.head('meta/back.json');
    // Assess
    expect(onAzure?.properties).toEqual(properties);
    expect(back?.properties).toEqual(properties);
    for (const name of Object.keys(onAzure?.metadata ?? {})) {
      expect(name).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
    }
    expect(readReplicaMarker(onAzure?.metadata ?? {})).toMatchObject({
      origin: 's3',
      sourceEtag: put.ETag,
    });
    const backMarker = readReplicaMarker(back?.metadata ?? {});
    expect(backMarker).toMatchObject({ origin: 'azure', sourceEtag: onAzure?.etag });
    const userBack = Object.fromEntries(
      Object.entries(back?.metadata ?? {}).filter(([name]) => !name.startsWith('s3az_')),
    );
    expect(userBack).toEqual({
      'my-key': 'dash',
      'my.dotted': 'dot',
      plain_name: 'plain',
      color: 'blue',
    });
  });

  it('keeps Azure metadata names (compared without case, as Azure does) after a trip through S3', async () => {
    const blob = azure as AzureBlobObjectStore;
    await blob.put('meta/cased', Buffer.from('x'), {
      properties: {},
      metadata: { MyKey: 'v1', lower: 'v2' },
      condition: { kind: 'any' },
    });
    await copy(azure, 'meta/cased', s3, 'meta/cased');
    await copy(s3, 'meta/cased', azure, 'meta/cased-back');
    const metadata = (await azure.head('meta/cased-back'))?.metadata ?? {};
    // Node's HTTP client (and Azurite) report header names in lower case.
    const folded = Object.fromEntries(
      Object.entries(metadata).map(([name, value]) => [name.toLowerCase(), value]),
    );
    expect(folded.mykey).toBe('v1');
    expect(folded.lower).toBe('v2');
  });

  it('refuses, as permanent, metadata larger than S3 can hold', async () => {
    await azure.put('meta/huge', Buffer.from('x'), {
      properties: {},
      metadata: { big: 'v'.repeat(3000) },
      condition: { kind: 'any' },
    });
    const error = await copy(azure, 'meta/huge', s3, 'meta/huge').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnrepresentableError);
    expect(await s3.head('meta/huge')).toBeUndefined();
  });

  it('refuses an S3 key that Azure would trim', async () => {
    await s3.put('folder/', Buffer.alloc(0), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    await expect(copy(s3, 'folder/', azure, 'folder/')).rejects.toBeInstanceOf(
      UnrepresentableError,
    );
  });

  it('pulls S3 -> Azure server side through Put Block From URL', async () => {
    const body = randomBytes(3 * PART + 17);
    await putObject(s3, 'pull/big', body);
    const result = await copy(s3, 'pull/big', azure, 'pull/big');
    expect(result.transfer).toBe('pull');
    expect(sha(await content(azure, 'pull/big'))).toBe(sha(body));
  });

  it('streams instead when asked to', async () => {
    const body = randomBytes(PART + 1);
    await putObject(s3, 'pull/forced', body);
    const result = await copy(s3, 'pull/forced', azure, 'pull/forced', { transfer: 'stream' });
    expect(result.transfer).toBe('stream');
    expect(sha(await content(azure, 'pull/forced'))).toBe(sha(body));
  });

  it('falls back to streaming, says so once, and remembers it, when the destination cannot pull', async () => {
    // Prepare: Azurite itself, without the shim, answers 501 to Put Block From URL.
    const env = emulatorEnv();
    const direct = new BlobServiceClient(
      env.azuriteAccountUrl,
      new StorageSharedKeyCredential(env.azureAccountName, env.azureAccountKey),
    ).getContainerClient(azure.container);
    const noPull = new AzureBlobObjectStore(direct);
    const memory = new PullMemory();
    const lines: string[] = [];
    const body = randomBytes(PART + 5);
    await putObject(s3, 'fallback/a', body);
    // Act
    const first = await copy(s3, 'fallback/a', noPull, 'fallback/a', {
      pullMemory: memory,
      log: (line) => lines.push(line),
    });
    const second = await copy(s3, 'fallback/a', noPull, 'fallback/b', {
      pullMemory: memory,
      log: (line) => lines.push(line),
    });
    // Assess
    expect([first.transfer, second.transfer]).toEqual(['stream', 'stream']);
    expect(lines.filter((line) => line.includes('server-side pull is not available'))).toHaveLength(
      1,
    );
    expect(sha(await content(azure, 'fallback/b'))).toBe(sha(body));
  });

  describe("when the source answers the destination's pull with an error", () => {
    // One attempt per request, so that the store sees the source's first answer, as it sees the
    // last one after the SDK's own attempts.
    let once: AzureBlobObjectStore;
    const fronts: S3Front[] = [];

    beforeAll(() => {
      once = new AzureBlobObjectStore(
        BlobServiceClient.fromConnectionString(emulatorEnv().azureConnectionString, {
          retryOptions: { maxTries: 1 },
        }).getContainerClient(azure.container),
      );
    });

    afterEach(() => {
      for (const front of fronts.splice(0)) front.close();
    });

    async function sourceAnswering(times: number, answer: S3Answer) {
      const front = await s3Front(times, answer);
      fronts.push(front);
      return { front, source: presigningThrough(s3, front.origin) };
    }

    it.each([
      ['a transient 503 SlowDown', SLOW_DOWN],
      ['an expired presigned URL', EXPIRED],
    ])(
      'retries a single-request pull after %s, and pulls again next time',
      async (_label, answer) => {
        // Prepare
        const { front, source } = await sourceAnswering(1, answer);
        const memory = new PullMemory();
        const body = randomBytes(3 * KiB);
        await putObject(s3, 'transient/single', body);
        // Act
        const first = await copy(source, 'transient/single', once, 'transient/single', {
          pullMemory: memory,
        }).catch((e: unknown) => e);
        const second = await copy(source, 'transient/single', once, 'transient/single', {
          pullMemory: memory,
        });
        // Assess
        expect(first).toBeInstanceOf(RetryableError);
        expect(first).not.toBeInstanceOf(PullUnsupportedError);
        expect(memory.isDisabled(source, once)).toBe(false);
        expect(second.transfer).toBe('pull');
        expect(front.refused()).toBe(1);
        expect(sha(await content(azure, 'transient/single'))).toBe(sha(body));
      },
    );

    it('retries a part whose pull the source answered 503 SlowDown, and still pulls', async () => {
      const { front, source } = await sourceAnswering(1, SLOW_DOWN);
      const memory = new PullMemory();
      const body = randomBytes(PART + 17);
      await putObject(s3, 'transient/staged', body);
      const result = await copy(source, 'transient/staged', once, 'transient/staged', {
        pullMemory: memory,
      });
      expect(result.transfer).toBe('pull');
      expect(front.refused()).toBe(1);
      expect(memory.isDisabled(source, once)).toBe(false);
      expect(sha(await content(azure, 'transient/staged'))).toBe(sha(body));
    });

    it('streams while the source refuses the destination (403 AccessDenied), and pulls again once the memory of it expires', async () => {
      // Prepare: a bucket policy that refuses Azure's addresses, lifted after the second copy.
      const { front, source } = await sourceAnswering(Number.POSITIVE_INFINITY, ACCESS_DENIED);
      const clock = { now: 0 };
      const memory = new PullMemory({ forgetAfterMs: 10 * 60_000, now: () => clock.now });
      const lines: string[] = [];
      const body = randomBytes(3 * KiB);
      await putObject(s3, 'refused/a', body);
      const copyOnce = (key: string) =>
        copy(source, 'refused/a', once, key, { pullMemory: memory, log: (l) => lines.push(l) });
      // Act
      const first = await copyOnce('refused/a');
      const second = await copyOnce('refused/b');
      front.repair();
      clock.now = 10 * 60_000;
      const third = await copyOnce('refused/c');
      // Assess
      expect([first.transfer, second.transfer, third.transfer]).toEqual([
        'stream',
        'stream',
        'pull',
      ]);
      expect(front.refused()).toBe(1);
      expect(lines.filter((l) => l.includes('server-side pull is not available'))).toHaveLength(1);
      expect(sha(await content(azure, 'refused/c'))).toBe(sha(body));
    });
  });

  it.each(['stream', 'auto'] as const)(
    'never commits a mixed object when the source is overwritten mid-copy (%s)',
    async (transfer) => {
      // Prepare: a source store that overwrites the object after the first range is read.
      const key = `overwrite/${transfer}`;
      const v1 = Buffer.alloc(3 * PART, 1);
      const v2 = Buffer.alloc(3 * PART, 2);
      await putObject(s3, key, v1);
      let overwritten = false;
      let calls = 0;
      // Overwrite just before the second range is read, so the first came from v1.
      const overwriteBeforeSecondRange = async () => {
        calls += 1;
        if (calls !== 2) return;
        overwritten = true;
        await putObject(s3, key, v2);
      };
      const source = interpose(s3, { get: overwriteBeforeSecondRange });
      const target = interpose(azure, { stagePartFromUrl: overwriteBeforeSecondRange });
      // Act
      const result = await copy(source, key, transfer === 'auto' ? target : azure, key, {
        transfer,
        concurrency: 1,
      });
      // Assess
      expect(overwritten).toBe(true);
      expect(result.restarts).toBeGreaterThanOrEqual(1);
      const copied = await content(azure, key);
      expect(copied.equals(v2)).toBe(true);
      expect(readReplicaMarker((await azure.head(key))?.metadata ?? {})?.sourceEtag).toBe(
        (await s3.head(key))?.etag,
      );
    },
  );

  it('commits only on the destination state it was given', async () => {
    await s3.put('cond/src', Buffer.from('new'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    await azure.put('cond/src', Buffer.from('user wrote this'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    await expect(
      copy(s3, 'cond/src', azure, 'cond/src', { condition: { kind: 'absent' } }),
    ).rejects.toBeInstanceOf(PreconditionFailedError);
    expect((await content(azure, 'cond/src')).toString()).toBe('user wrote this');
  });

  it('resumes from what is already staged and copies only the missing parts', async () => {
    // Prepare: a first attempt that fails after staging two of four parts.
    const body = randomBytes(4 * PART);
    await putObject(s3, 'resume/obj', body);
    let staged = 0;
    const failing = interpose(azure, {
      stagePart: async () => {
        staged += 1;
        if (staged > 2) throw new Error('simulated crash');
      },
    });
    await expect(
      copy(s3, 'resume/obj', failing, 'resume/obj', { transfer: 'stream', concurrency: 1 }),
    ).rejects.toThrow();
    // Act
    let second = 0;
    const counting = interpose(azure, {
      stagePart: async () => {
        second += 1;
      },
    });
    await copy(s3, 'resume/obj', counting, 'resume/obj', { transfer: 'stream', concurrency: 1 });
    // Assess
    expect(second).toBe(2);
    expect(sha(await content(azure, 'resume/obj'))).toBe(sha(body));
  });
});

describe('Function: copyObject within a memory budget', () => {
  /** The store, recording how many calls of `method` run at once at most, and how many ran. */
  function tracking<T extends ObjectStore>(store: T, method: string) {
    let running = 0;
    let most = 0;
    let calls = 0;
    const wrapped = new Proxy(store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        if (property !== method) return (value as (...a: unknown[]) => unknown).bind(target);
        return async (...args: unknown[]) => {
          running += 1;
          calls += 1;
          most = Math.max(most, running);
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } finally {
            running -= 1;
          }
        };
      },
    });
    return { store: wrapped, most: () => most, calls: () => calls };
  }

  it('holds at most as many whole blocks for Azure as the budget takes', async () => {
    // Prepare: 8 parts of 5 MiB, 8 wanted at once, 16 MiB allowed: 3 blocks fit.
    const body = randomBytes(8 * PART);
    await putObject(s3, 'budget/to-azure', body);
    const destination = tracking(azure, 'stagePart');
    // Act
    await copy(s3, 'budget/to-azure', destination.store, 'budget/to-azure', {
      transfer: 'stream',
      concurrency: 8,
      memoryBudget: 16 * MiB,
    });
    // Assess
    expect(destination.calls()).toBe(8);
    // At most 3 (8 without the budget); fewer when a busy machine lets one finish first.
    expect(destination.most()).toBeLessThanOrEqual(3);
    expect(sha(await content(azure, 'budget/to-azure'))).toBe(sha(body));
  });

  it('streams parts to S3 without holding them, so the budget does not limit them', async () => {
    // Prepare
    const body = randomBytes(6 * PART + 123);
    await putObject(azure, 'budget/to-s3', body);
    const streamed = tracking(s3, 'stagePartStream');
    const held = tracking(streamed.store, 'stagePart');
    // Act
    await copy(azure, 'budget/to-s3', held.store, 'budget/to-s3', {
      concurrency: 4,
      memoryBudget: 16 * MiB,
    });
    // Assess
    expect(streamed.calls()).toBe(7);
    expect(streamed.most()).toBe(4);
    expect(held.calls()).toBe(0);
    expect(sha(await content(s3, 'budget/to-s3'))).toBe(sha(body));
  });

  it('sends a streamed part again when the source breaks off in the middle of it', async () => {
    // Prepare: the first read of the second part ends in a connection reset after 1 MiB.
    const body = randomBytes(3 * PART);
    await putObject(azure, 'budget/reset', body);
    let broken = false;
    const source = new Proxy(azure, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        if (property !== 'get') return value.bind(target);
        return async (...args: Parameters<AzureBlobObjectStore['get']>) => {
          const object = await target.get(...args);
          if (broken || args[1]?.range?.start !== PART) return object;
          broken = true;
          let seen = 0;
          const resetting = new Transform({
            transform(chunk: Buffer, _encoding, done) {
              seen += chunk.length;
              done(seen >= MiB ? new Error('read ECONNRESET') : null, chunk);
            },
          });
          return { ...object, body: object.body.pipe(resetting) };
        };
      },
    });
    const streamed = tracking(s3, 'stagePartStream');
    // Act
    await copy(source, 'budget/reset', streamed.store, 'budget/reset', { concurrency: 1 });
    // Assess
    expect(broken).toBe(true);
    expect(streamed.calls()).toBe(4);
    expect(sha(await content(s3, 'budget/reset'))).toBe(sha(body));
  });

  it('refuses, naming the memory needed, a copy whose blocks cannot fit the budget', async () => {
    // Prepare: a store that allows only 2 blocks, so 40 MiB needs 20 MiB blocks.
    const body = randomBytes(40 * MiB);
    await putObject(s3, 'budget/too-small', body);
    const twoBlocks = new Proxy(azure, {
      get(target, property, receiver) {
        if (property === 'limits') return { ...target.limits, maxParts: 2 };
        const value = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    // Act, Assess
    await expect(
      copy(s3, 'budget/too-small', twoBlocks, 'budget/too-small', {
        transfer: 'stream',
        memoryBudget: 16 * MiB,
      }),
    ).rejects.toThrow(/needs parts of 20\.0 MiB .* memory budget of 16\.0 MiB/);
    expect(await azure.head('budget/too-small')).toBeUndefined();
  });
});

describe('Function: copyObject, stopped by its signal and continued', () => {
  const PARTS = 6;
  const STOPPED_AFTER = 2;

  describe.each([
    ['S3 -> Azure', () => s3, () => azure],
    ['Azure -> S3', () => azure, () => s3],
  ])('%s', (_label, sourceOf, destinationOf) => {
    it('resumes a copy stopped after k of n parts and sends only the n - k missing ones', async () => {
      // Prepare: a first run stopped (as by its time budget) once it has staged two parts.
      const key = `stop/${uniqueName('obj')}`;
      const body = randomBytes(PARTS * PART);
      await putObject(sourceOf(), key, body);
      const first = await stopAfter(sourceOf(), destinationOf(), key, STOPPED_AFTER);
      // Act
      const counted = countingParts(destinationOf());
      const result = await copy(sourceOf(), key, counted.store, key, {
        transfer: 'stream',
        concurrency: 1,
        resume: first.checkpoint,
      });
      // Assess
      expect(first.checkpoint.parts.map((part) => part.partNumber)).toEqual([1, 2]);
      expect(first.error.partsSent).toBe(STOPPED_AFTER);
      expect(counted.sent()).toBe(PARTS - STOPPED_AFTER);
      expect(result.parts).toBe(PARTS);
      expect(sha(await content(destinationOf(), key))).toBe(sha(body));
    });
  });

  it('sends again a staged part whose checksum is not the one recorded when it was sent', async () => {
    // Prepare
    const key = `stop/${uniqueName('obj')}`;
    const body = randomBytes(PARTS * PART);
    await putObject(azure, key, body);
    const first = await stopAfter(azure, s3, key, STOPPED_AFTER);
    const [one, ...rest] = first.checkpoint.parts;
    const tampered: CopyCheckpoint = {
      ...first.checkpoint,
      parts: [{ partNumber: one?.partNumber ?? 1, checksum: 'AAAAAA==' }, ...rest],
    };
    // Act
    const counted = countingParts(s3);
    await copy(azure, key, counted.store, key, {
      transfer: 'stream',
      concurrency: 1,
      resume: tampered,
    });
    // Assess
    expect(counted.sent()).toBe(PARTS - STOPPED_AFTER + 1);
    expect(sha(await content(s3, key))).toBe(sha(body));
  });

  it('abandons the staged upload and starts over when the source changed between the runs', async () => {
    // Prepare
    const key = `stop/${uniqueName('obj')}`;
    await putObject(azure, key, randomBytes(PARTS * PART));
    const first = await stopAfter(azure, s3, key, STOPPED_AFTER);
    const changed = randomBytes(PARTS * PART);
    await putObject(azure, key, changed);
    // Act
    const counted = countingParts(s3);
    await copy(azure, key, counted.store, key, {
      transfer: 'stream',
      concurrency: 1,
      resume: first.checkpoint,
    });
    // Assess
    expect(counted.sent()).toBe(PARTS);
    expect(sha(await content(s3, key))).toBe(sha(changed));
    await expect(
      s3.listStaged({ key, uploadId: first.checkpoint.uploadId }),
    ).rejects.toBeInstanceOf(NotFoundError);
  });
});

/** Copies `key` with a signal that stops the copy once `parts` parts are staged. */
async function stopAfter(
  source: ObjectStore,
  destination: ObjectStore,
  key: string,
  parts: number,
): Promise<{ error: CopyStoppedError; checkpoint: CopyCheckpoint }> {
  const budget = new AbortController();
  const counted = countingParts(destination, (sent) => {
    if (sent === parts) budget.abort(new Error('time budget'));
  });
  const error = await copy(source, key, counted.store, key, {
    transfer: 'stream',
    concurrency: 1,
    signal: budget.signal,
    keepStagedOnStop: true,
  }).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof CopyStoppedError) || !error.checkpoint) {
    throw new Error(`the copy did not stop with a checkpoint: ${String(error)}`);
  }
  return { error, checkpoint: error.checkpoint };
}

type Hooks = Partial<Record<string, () => Promise<void>>>;

/** Wraps a real store so a test can act (overwrite, fail) just before a named call. */
function interpose<T extends ObjectStore>(store: T, hooks: Hooks): T {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      const hook = typeof property === 'string' ? hooks[property] : undefined;
      if (!hook) return (value as (...a: unknown[]) => unknown).bind(target);
      return async (...args: unknown[]) => {
        await hook();
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

interface S3Answer {
  status: number;
  code: string;
  message: string;
}

// What S3 answers: https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
const SLOW_DOWN: S3Answer = {
  status: 503,
  code: 'SlowDown',
  message: 'Please reduce your request rate.',
};
const EXPIRED: S3Answer = { status: 403, code: 'AccessDenied', message: 'Request has expired' };
const ACCESS_DENIED: S3Answer = { status: 403, code: 'AccessDenied', message: 'Access Denied' };

interface S3Front {
  /** `http://host:port` of the front. */
  origin: string;
  /** Requests answered with the error so far. */
  refused(): number;
  /** Forwards every request from now on. */
  repair(): void;
  close(): void;
}

/**
 * An S3 endpoint in front of the emulator that answers the first `times` requests with
 * `answer`, as S3 would answer the destination's pull, and forwards the others.
 */
async function s3Front(times: number, answer: S3Answer): Promise<S3Front> {
  const target = new URL(emulatorEnv().s3Endpoint);
  let refused = 0;
  let repaired = false;
  const server = http.createServer((request, response) => {
    if (!repaired && refused < times) {
      refused += 1;
      response
        .writeHead(answer.status, { 'content-type': 'application/xml' })
        .end(
          `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${answer.code}</Code><Message>${answer.message}</Message></Error>`,
        );
      return;
    }
    const forward = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: request.method,
        path: request.url,
        headers: { ...request.headers, host: target.host },
      },
      (upstream) => {
        response.writeHead(upstream.statusCode ?? 502, upstream.headers);
        upstream.pipe(response);
      },
    );
    forward.once('error', () => response.destroy());
    request.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    refused: () => refused,
    repair: () => {
      repaired = true;
    },
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** The S3 store, with the URLs it presigns for pulls pointing at `origin` instead. */
function presigningThrough(store: S3ObjectStore, origin: string): S3ObjectStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      if (property !== 'presignGet') return value.bind(target);
      return async (...args: Parameters<S3ObjectStore['presignGet']>) => {
        const url = new URL(await target.presignGet(...args));
        const front = new URL(origin);
        url.host = front.host;
        return url.toString();
      };
    },
  });
}
