import { randomBytes } from 'node:crypto';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import { PullMemory } from '../../src/copy/pull-memory.ts';
import { CREATE_FIRST_BYTES, runCopyTask, SMALL_OBJECT_BYTES } from '../../src/copy/run-task.ts';
import { readReplicaMarker } from '../../src/core/metadata.ts';
import type { CopyTask } from '../../src/core/route.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import type { ObjectStore } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import { makeBlobServiceClient, makeS3Client, uniqueName } from '../support/emulators.ts';
import { readAll } from '../support/streams.ts';

let s3: S3ObjectStore;
let azure: AzureBlobObjectStore;
const any = { properties: {}, metadata: {}, condition: { kind: 'any' as const } };

beforeAll(async () => {
  const client = makeS3Client();
  const bucket = uniqueName('task');
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  s3 = new S3ObjectStore(client, bucket);
  const container = makeBlobServiceClient().getContainerClient(uniqueName('task'));
  await container.create();
  azure = new AzureBlobObjectStore(container);
});

function rule(deletes: 'mirror' | 'ignore' = 'mirror', conflictWinner: 's3' | 'azure' = 's3') {
  const [only] = validateConfig({
    rules: [
      {
        name: 'r',
        deletes,
        conflictWinner,
        s3: { bucket: s3.container },
        azure: { accountUrl: 'http://127.0.0.1:1/devstoreaccount1', container: azure.container },
      },
    ],
  }).rules;
  if (!only) throw new Error('no rule');
  return only;
}

function task(
  sourceSide: 's3' | 'azure',
  key: string,
  kind: 'created' | 'deleted' = 'created',
): CopyTask {
  return {
    rule: 'r',
    kind,
    sourceSide,
    sourceContainer: sourceSide === 's3' ? s3.container : azure.container,
    sourceKey: key,
    destinationContainer: sourceSide === 's3' ? azure.container : s3.container,
    destinationKey: key,
    eventTime: new Date().toISOString(),
    correlationId: `c-${key}`,
  };
}

function run(
  t: CopyTask,
  deletes: 'mirror' | 'ignore' = 'mirror',
  stores?: { source?: ObjectStore; destination?: ObjectStore },
  conflictWinner: 's3' | 'azure' = 's3',
) {
  const [source, destination] = t.sourceSide === 's3' ? [s3, azure] : [azure, s3];
  return runCopyTask(t, {
    rule: rule(deletes, conflictWinner),
    source: stores?.source ?? source,
    destination: stores?.destination ?? destination,
    pullMemory: new PullMemory(),
  });
}

/** `store`, with the name of every method called on it recorded in `calls`, in order. */
function recording(store: ObjectStore) {
  const calls: string[] = [];
  const watched = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(String(property));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store: watched, calls };
}

const text = async (store: ObjectStore, key: string) =>
  (await readAll((await store.get(key)).body)).toString();

describe('Function: runCopyTask', () => {
  it('copies a new S3 object to Azure, then skips the same task as up-to-date', async () => {
    await s3.put('new.txt', Buffer.from('hello'), any);
    expect(await run(task('s3', 'new.txt'))).toMatchObject({ action: 'copied', bytes: 5 });
    expect(await text(azure, 'new.txt')).toBe('hello');
    expect(await run(task('s3', 'new.txt'))).toMatchObject({
      action: 'skipped',
      reason: 'up-to-date',
    });
  });

  it("skips the replica's own event, so a change is copied exactly once", async () => {
    await azure.put('loop.txt', Buffer.from('from azure'), any);
    expect(await run(task('azure', 'loop.txt'))).toMatchObject({ action: 'copied' });
    // The S3 replica's event comes back through the pipeline:
    expect(await run(task('s3', 'loop.txt'))).toMatchObject({
      action: 'skipped',
      reason: 'replica',
    });
    expect(readReplicaMarker((await s3.head('loop.txt'))?.metadata ?? {})?.origin).toBe('azure');
  });

  it('mirrors a delete only to a destination that is still the replica', async () => {
    await s3.put('del.txt', Buffer.from('x'), any);
    await run(task('s3', 'del.txt'));
    await s3.delete('del.txt');
    expect(await run(task('s3', 'del.txt', 'deleted'))).toMatchObject({ action: 'deleted' });
    expect(await azure.head('del.txt')).toBeUndefined();

    await s3.put('kept.txt', Buffer.from('x'), any);
    await run(task('s3', 'kept.txt'));
    await s3.delete('kept.txt');
    // The user's rewrite on Azure comes seconds after the delete (its event was slow).
    const deletedEarlier = {
      ...task('s3', 'kept.txt', 'deleted'),
      eventTime: new Date(Date.now() - 5000).toISOString(),
    };
    await azure.put('kept.txt', Buffer.from('rewritten by a user'), any);
    expect(await run(deletedEarlier)).toMatchObject({ action: 'skipped', reason: 'diverged' });
    expect(await text(azure, 'kept.txt')).toBe('rewritten by a user');
  });

  it('holds a delete racing a write on the other side, then deletes what no event carried across', async () => {
    await s3.put('raced.txt', Buffer.from('x'), any);
    await run(task('s3', 'raced.txt'));
    await azure.put('raced.txt', Buffer.from('rewritten by a user'), any);
    await s3.delete('raced.txt');
    const deleted = task('s3', 'raced.txt', 'deleted');
    const first = await run(deleted);
    const rewritten = await azure.head('raced.txt');
    expect(first).toMatchObject({ action: 'held', etag: rewritten?.etag });
    expect(await text(azure, 'raced.txt')).toBe('rewritten by a user');

    const context = { rule: rule('mirror', 's3'), source: s3, destination: azure };
    const notYet = await runCopyTask(deleted, {
      ...context,
      held: { etag: rewritten?.etag ?? '', over: false },
    });
    expect(notYet).toMatchObject({ action: 'held' });
    const over = await runCopyTask(deleted, {
      ...context,
      held: { etag: rewritten?.etag ?? '', over: true },
    });
    expect(over).toMatchObject({ action: 'deleted' });
    expect(await azure.head('raced.txt')).toBeUndefined();
  });

  it('keeps the destination when the rule ignores deletes', async () => {
    await s3.put('ignored.txt', Buffer.from('x'), any);
    await run(task('s3', 'ignored.txt'));
    await s3.delete('ignored.txt');
    expect(await run(task('s3', 'ignored.txt', 'deleted'), 'ignore')).toMatchObject({
      action: 'skipped',
      reason: 'excluded',
    });
    expect(await azure.head('ignored.txt')).toBeDefined();
  });

  it('decides again when the destination changes between the read and the commit (rule 6)', async () => {
    // Prepare: the destination holds the replica of v1; a user writes it again just before
    // the commit of v2 (the write decided on after reading it) lands.
    await s3.put('race.txt', Buffer.from('v1 from s3'), any);
    await run(task('s3', 'race.txt'));
    await s3.put('race.txt', Buffer.from('v2 from s3'), any);
    let raced = false;
    const racing = new Proxy(azure, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        if (property !== 'putFromUrl' && property !== 'put') return value.bind(target);
        return async (...args: unknown[]) => {
          const options = args.at(-1) as { condition?: { kind: string } };
          if (!raced && options.condition?.kind === 'match') {
            raced = true;
            await target.put('race.txt', Buffer.from('user wrote this later'), any);
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    // Act
    // Stores keep whole seconds, so the user's write may carry the same time: a tie, which this
    // rule gives to Azure. Either way the later write on Azure must survive.
    const outcome = await run(task('s3', 'race.txt'), 'mirror', { destination: racing }, 'azure');
    // Assess: a create found the replica there (1), the copy decided on it lost to the user's
    // write with a 412 (2), and the third decision keeps the user's write.
    expect(raced).toBe(true);
    expect(outcome).toMatchObject({ action: 'skipped', reason: 'conflict', decisions: 3 });
    expect(await text(azure, 'race.txt')).toBe('user wrote this later');
  });

  it('creates a new small object without reading the destination, through this process', async () => {
    await s3.put('fresh.txt', Buffer.from('fresh'), any);
    const { store, calls } = recording(azure);
    const outcome = await run(task('s3', 'fresh.txt'), 'mirror', { destination: store });
    expect(outcome).toMatchObject({ action: 'copied', transfer: 'stream', decisions: 1 });
    expect(calls).not.toContain('head');
    expect(await text(azure, 'fresh.txt')).toBe('fresh');
  });

  it.each([
    ['s3', 'azure'],
    ['azure', 's3'],
  ] as const)(
    'reads a small new %s object with one GET, no HEAD, and copies it to %s',
    async (from, _to) => {
      const [source, destination] = from === 's3' ? [s3, azure] : [azure, s3];
      const key = `one-get-${from}.txt`;
      await source.put(key, Buffer.from('read once'), { ...any, metadata: { owner: 'me' } });
      const watched = recording(source);
      const outcome = await run({ ...task(from, key), size: 9 }, 'mirror', {
        source: watched.store,
      });
      expect(outcome).toMatchObject({ action: 'copied', bytes: 9, decisions: 1 });
      expect(watched.calls).toEqual(['getSmall']);
      expect(await text(destination, key)).toBe('read once');
      expect((await destination.head(key))?.metadata.owner).toBe('me');
    },
  );

  it('reads the source again when a small new object grew past the one-GET size', async () => {
    const body = randomBytes(CREATE_FIRST_BYTES + 1);
    await s3.put('grew.bin', body, any);
    const watched = recording(s3);
    // The event announced a 10-byte version; the object is larger now.
    const outcome = await run({ ...task('s3', 'grew.bin'), size: 10 }, 'mirror', {
      source: watched.store,
    });
    expect(outcome).toMatchObject({ action: 'copied', bytes: body.length });
    expect(watched.calls[0]).toBe('getSmall');
    expect(watched.calls).toContain('get');
    expect((await azure.head('grew.bin'))?.size).toBe(body.length);
  });

  it("ends a small new object's task as gone when one GET finds nothing", async () => {
    const watched = recording(s3);
    const outcome = await run({ ...task('s3', 'never-there.txt'), size: 3 }, 'mirror', {
      source: watched.store,
    });
    expect(outcome).toMatchObject({ action: 'skipped' });
    expect(watched.calls).toEqual(['getSmall']);
  });

  it('reads the destination and decides when the create finds it there', async () => {
    // A user's later write on Azure, then the earlier S3 object's event: the create must not
    // win. Stores keep whole seconds, so the two may tie; the rule gives a tie to Azure.
    await s3.put('exists.txt', Buffer.from('earlier in s3'), any);
    await azure.put('exists.txt', Buffer.from('later in azure'), any);
    expect(await run(task('s3', 'exists.txt'), 'mirror', undefined, 'azure')).toMatchObject({
      action: 'skipped',
      reason: 'conflict',
      decisions: 2,
    });
    expect(await text(azure, 'exists.txt')).toBe('later in azure');
  });

  it('streams an object over the create-first size after reading the destination', async () => {
    const body = randomBytes(CREATE_FIRST_BYTES + 1);
    await s3.put('medium.bin', body, any);
    const { store, calls } = recording(azure);
    const outcome = await run(task('s3', 'medium.bin'), 'mirror', { destination: store });
    expect(outcome).toMatchObject({ action: 'copied', transfer: 'stream', decisions: 1 });
    expect(calls.filter((call) => call === 'head' || call === 'put')).toEqual(['head', 'put']);
  });

  it('pulls an object over the small-object size, after reading the destination', async () => {
    const body = randomBytes(SMALL_OBJECT_BYTES + 1);
    await s3.put('large.bin', body, any);
    const outcome = await run(task('s3', 'large.bin'));
    expect(outcome).toMatchObject({ action: 'copied', transfer: 'pull', decisions: 1 });
    expect((await azure.head('large.bin'))?.size).toBe(body.length);
  });

  it('ends duplicated and reordered tasks with the newest version on both sides', async () => {
    await s3.put('order.txt', Buffer.from('v1'), any);
    const first = task('s3', 'order.txt');
    await s3.put('order.txt', Buffer.from(`v2-${randomBytes(4).toString('hex')}`), any);
    const second = task('s3', 'order.txt');
    // Newer first, then the older one, then a duplicate.
    await run(second);
    await run(first);
    await run(second);
    expect(await text(azure, 'order.txt')).toBe(await text(s3, 'order.txt'));
  });
});
