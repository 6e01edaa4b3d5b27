import { describe, expect, it } from 'vitest';
import {
  contentIntact,
  type DecisionInput,
  type DecisionTask,
  decide,
  looksLikeEcho,
  markerNames,
} from '../../src/core/decide.ts';
import { globToRegExp, keySelected } from '../../src/core/glob.ts';
import {
  buildNativeMetadata,
  MARKER_NAMES,
  type ReplicaMarker,
  readReplicaMarker,
  sourceRef,
} from '../../src/core/metadata.ts';
import type { ObjectHead, Side } from '../../src/stores/object-store.ts';

const T0 = new Date('2026-11-22T10:00:00Z');
const later = (seconds: number) => new Date(T0.getTime() + seconds * 1000);
const RULE = 'r';
const WHERE = { s3: { container: 'bucket', key: 'k' }, azure: { container: 'cont', key: 'k' } };
const MD5 = { one: 'AAAAAAAAAAAAAAAAAAAAAA==', two: 'BBBBBBBBBBBBBBBBBBBBBB==' };

/** Optional fields that a test may also set to `undefined` (to leave them out). */
type Loose<T> = { [K in keyof T]?: T[K] | undefined };

/** The object without its `undefined` fields. */
function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function head(
  etag: string,
  lastModified = T0,
  metadata: Record<string, string> = {},
  extra: Partial<ObjectHead> = {},
): ObjectHead {
  return { key: 'k', size: 1, etag, lastModified, properties: {}, metadata, ...extra };
}

/**
 * An object the replicator wrote on the side opposite `origin`, as a copy of `sourceEtag`,
 * with today's marker (rule, source key, size, MD5) unless `marker` says otherwise.
 */
function replica(
  etag: string,
  origin: Side,
  sourceEtag: string,
  options: { marker?: Loose<ReplicaMarker>; legacy?: boolean; head?: Loose<ObjectHead> } = {},
): ObjectHead {
  const at = WHERE[origin];
  const marker: ReplicaMarker = options.legacy
    ? { origin, sourceEtag, sourceLastModified: T0.toISOString() }
    : {
        origin,
        sourceEtag,
        sourceLastModified: T0.toISOString(),
        rule: RULE,
        source: sourceRef(at.container, at.key),
        size: 1,
        contentMd5: MD5.one,
        ...(options.marker as Partial<ReplicaMarker>),
      };
  const metadata = buildNativeMetadata(origin === 's3' ? 'azure' : 's3', {}, defined(marker));
  const extra = defined({ contentMd5: MD5.one, ...options.head }) as Partial<ObjectHead>;
  return head(etag, later(1), metadata, extra);
}

function task(overrides: Partial<DecisionTask> = {}): DecisionTask {
  const sourceSide = overrides.sourceSide ?? 's3';
  const from = WHERE[sourceSide];
  const to = WHERE[sourceSide === 's3' ? 'azure' : 's3'];
  return {
    rule: RULE,
    sourceSide,
    kind: 'created',
    sourceContainer: from.container,
    sourceKey: from.key,
    destinationContainer: to.container,
    destinationKey: to.key,
    eventTime: later(100).toISOString(),
    ...overrides,
  };
}

function input(overrides: Partial<DecisionInput> & { t?: Partial<DecisionTask> } = {}) {
  const { t, ...rest } = overrides;
  return {
    task: task(t),
    selected: true,
    mirrorDeletes: true,
    tieWinner: 's3',
    source: head('"s1"'),
    destination: undefined,
    ...rest,
  } satisfies DecisionInput;
}

describe('Function: decide (created)', () => {
  it('copies to an absent destination with If-None-Match: * (rule 6)', () => {
    expect(decide(input())).toEqual({
      action: 'copy',
      condition: { kind: 'absent' },
      conflict: false,
    });
  });

  it('skips a key the rule excludes', () => {
    expect(decide(input({ selected: false }))).toMatchObject({
      action: 'skip',
      reason: 'excluded',
    });
  });

  it.each([
    ['an S3 key ending in /', { t: { sourceKey: 'dir/' } }],
    [
      'an ADLS Gen2 directory blob',
      { t: { sourceSide: 'azure' as const }, source: head('"d"', T0, { hdi_isfolder: 'true' }) },
    ],
    [
      'a deleted folder key',
      { t: { sourceKey: 'dir/', kind: 'deleted' as const }, source: undefined },
    ],
  ])('skips %s as a folder marker, never a file', (_, overrides) => {
    expect(decide(input(overrides))).toMatchObject({ action: 'skip', reason: 'folder-marker' });
  });

  it('skips a source that is gone', () => {
    expect(decide(input({ source: undefined }))).toMatchObject({
      action: 'skip',
      reason: 'source-gone',
    });
  });

  it('skips the event of an intact replica of this very key, so nothing copies back (rule 2)', () => {
    const azureReplicaOfS3 = replica('"a1"', 's3', '"s1"');
    const decision = decide(
      input({ t: { sourceSide: 'azure' }, source: azureReplicaOfS3, destination: head('"s1"') }),
    );
    expect(decision).toMatchObject({ action: 'skip', reason: 'replica' });
  });

  it('recognises a replica with the marker of earlier versions (no mass re-copy after an upgrade)', () => {
    const legacy = replica('"a1"', 's3', '"s1"', { legacy: true, head: { contentMd5: MD5.two } });
    expect(
      decide(input({ t: { sourceSide: 'azure' }, source: legacy, destination: head('"s1"') })),
    ).toMatchObject({ action: 'skip', reason: 'replica' });
    // ... and as a destination that already holds the source's version.
    expect(decide(input({ destination: legacy }))).toMatchObject({ reason: 'up-to-date' });
  });

  it("replicates a user's overwrite that kept the marker, when the event names a user (provenance first)", () => {
    // rclone keeps a blob's metadata on overwrite: same marker, same size, no MD5 to compare.
    const rewritten = replica('"a2"', 's3', '"s1"', { head: { contentMd5: undefined } });
    const decision = decide(
      input({
        t: { sourceSide: 'azure', writtenBy: 'user', etag: '"a2"' },
        source: rewritten,
        destination: head('"s1"'),
      }),
    );
    // The destination is still what the replica was made from: no conflict, just the change.
    expect(decision).toEqual({
      action: 'copy',
      condition: { kind: 'match', etag: '"s1"' },
      conflict: false,
    });
  });

  it('treats a user event for another version than the live one as no provenance', () => {
    const replicaNow = replica('"a3"', 's3', '"s1"');
    const decision = decide(
      input({
        t: { sourceSide: 'azure', writtenBy: 'user', etag: '"a2"' },
        source: replicaNow,
        destination: head('"s1"'),
      }),
    );
    expect(decision).toMatchObject({ action: 'skip', reason: 'replica' });
  });

  it.each([
    ['another size', { size: 2 }],
    ['another MD5', { contentMd5: MD5.two }],
  ])('without provenance, catches an overwrite that kept the marker by %s', (_, changed) => {
    const rewritten = replica('"a2"', 's3', '"s1"', { head: changed });
    const decision = decide(
      input({ t: { sourceSide: 'azure' }, source: rewritten, destination: head('"s1"') }),
    );
    expect(decision).toMatchObject({ action: 'copy', conflict: false });
  });

  it.each([
    ['a copy of a replica under another key', { source: sourceRef('bucket', 'other') }],
    ['a replica made by another rule', { rule: 'other-rule' }],
    ['an s3az copy (no rule)', { rule: undefined }],
  ])('replicates %s: its marker names something else', (_, marker) => {
    const copied = replica('"a1"', 's3', '"s0"', { marker });
    const decision = decide(input({ t: { sourceSide: 'azure' }, source: copied }));
    expect(decision).toEqual({ action: 'copy', condition: { kind: 'absent' }, conflict: false });
  });

  it('skips a destination that already holds this version (rule 3)', () => {
    const decision = decide(input({ destination: replica('"a1"', 's3', '"s1"') }));
    expect(decision).toMatchObject({ action: 'skip', reason: 'up-to-date' });
  });

  it('updates an older replica, conditional on its eTag (rules 4 and 6)', () => {
    const decision = decide(
      input({ source: head('"s2"', later(10)), destination: replica('"a1"', 's3', '"s1"') }),
    );
    expect(decision).toEqual({
      action: 'copy',
      condition: { kind: 'match', etag: '"a1"' },
      conflict: false,
    });
  });

  it('replicates a source version dated before the replica (a multipart upload, a restored version): rule 4', () => {
    const decision = decide(
      input({
        source: head('"s-old"', later(-3600)),
        destination: replica('"a2"', 's3', '"s2"', {
          marker: { sourceLastModified: T0.toISOString() },
        }),
      }),
    );
    expect(decision).toEqual({
      action: 'copy',
      condition: { kind: 'match', etag: '"a2"' },
      conflict: false,
    });
  });

  it('replicates a restored version that is itself a replica of an older version of the other side', () => {
    // S3 k rolled back to v1 (a replica of Azure's a1); Azure holds our replica of S3's v2.
    const restored = replica('"s1"', 'azure', '"a1"');
    const decision = decide(
      input({ source: restored, destination: replica('"a2"', 's3', '"s2"') }),
    );
    expect(decision).toMatchObject({ action: 'copy', condition: { kind: 'match', etag: '"a2"' } });
  });

  it('skips a source that is our replica of what the destination holds, even when the destination carries a marker too', () => {
    // Azure's blob was renamed away and back (keeping our marker of S3's "s0"), then copied to
    // S3 as "s1": the copy's own event must not copy it back, or the two would ping-pong.
    const s3Replica = replica('"s1"', 'azure', '"a1"');
    const azureRenamedBack = replica('"a1"', 's3', '"s0"');
    expect(decide(input({ source: s3Replica, destination: azureRenamedBack }))).toMatchObject({
      action: 'skip',
      reason: 'replica',
    });
  });

  it('lets the newer of two user writes win, and counts the conflict (rule 4)', () => {
    const newerSource = decide(
      input({ source: head('"s1"', later(20)), destination: head('"a1"', later(10)) }),
    );
    expect(newerSource).toEqual({
      action: 'copy',
      condition: { kind: 'match', etag: '"a1"' },
      conflict: true,
    });
    const olderSource = decide(
      input({ source: head('"s1"', later(10)), destination: head('"a1"', later(20)) }),
    );
    expect(olderSource).toMatchObject({ action: 'skip', reason: 'conflict' });
  });

  it('is a true conflict when a replica was rewritten and its original changed too', () => {
    const rewritten = replica('"a2"', 's3', '"s1"', { head: { size: 5 } });
    const decision = decide(
      input({
        t: { sourceSide: 'azure', writtenBy: 'user', etag: '"a2"' },
        source: { ...rewritten, lastModified: later(20) },
        destination: head('"s9"', later(10)),
      }),
    );
    expect(decision).toMatchObject({ action: 'copy', conflict: true });
  });

  it('skips a pair where one side is an s3az copy (no rule) of the version the other holds', () => {
    // A backfill with `s3az copy` of a multipart object: no MD5 to compare, no rule named.
    const backfilled = replica('"a1"', 's3', '"s1-2"', {
      marker: { rule: undefined, contentMd5: undefined },
      head: { contentMd5: undefined },
    });
    const original = head('"s1-2"', T0);
    expect(
      decide(input({ t: { sourceSide: 'azure' }, source: backfilled, destination: original })),
    ).toMatchObject({ action: 'skip', reason: 'up-to-date' });
    expect(decide(input({ source: original, destination: backfilled }))).toMatchObject({
      action: 'skip',
      reason: 'up-to-date',
    });
  });

  it('skips two user writes of the same content', () => {
    const decision = decide(
      input({
        source: head('"s1"', later(20), {}, { contentMd5: MD5.one }),
        destination: head('"a1"', later(30), {}, { contentMd5: MD5.one }),
      }),
    );
    expect(decision).toMatchObject({ action: 'skip', reason: 'up-to-date' });
  });

  it.each([
    ['s3', 'copy'],
    ['azure', 'skip'],
  ] as const)('gives a tie to the configured side (%s wins -> %s)', (tieWinner, action) => {
    const decision = decide(
      input({ tieWinner, source: head('"s1"', T0), destination: head('"a1"', T0) }),
    );
    expect(decision.action).toBe(action);
    if (decision.action === 'skip') expect(decision.detail).toContain('tie to azure');
  });
});

describe('Function: decide (deleted)', () => {
  const deleted = (overrides: Partial<DecisionInput> & { t?: Partial<DecisionTask> }) =>
    input({ source: undefined, ...overrides, t: { kind: 'deleted', ...overrides.t } });

  it('deletes our replica of the deleted object, conditional on its eTag (rule 7)', () => {
    expect(decide(deleted({ destination: replica('"a1"', 's3', '"s1"') }))).toEqual({
      action: 'delete',
      condition: { kind: 'match', etag: '"a1"' },
    });
  });

  it('deletes the original when its replica is deleted (rule 7)', () => {
    const original = head('"s1"', later(10));
    const decision = decide(
      deleted({
        t: { sourceSide: 'azure', eventTime: later(12).toISOString() },
        destination: original,
      }),
    );
    expect(decision).toEqual({ action: 'delete', condition: { kind: 'match', etag: '"s1"' } });
  });

  it('keeps a destination written after the delete, with the true reason (rule 7)', () => {
    const decision = decide(
      deleted({ t: { eventTime: later(10).toISOString() }, destination: head('"a9"', later(20)) }),
    );
    expect(decision).toMatchObject({ action: 'skip', reason: 'diverged' });
    expect(decision.action === 'skip' && decision.detail).toMatch(/was written after the delete/);
  });

  it('holds a delete whose destination was written in the same second (Last-Modified has whole seconds)', () => {
    const decision = decide(
      deleted({
        t: { eventTime: new Date(later(10).getTime() + 400).toISOString() },
        destination: head('"a9"', later(10)),
      }),
    );
    expect(decision).toMatchObject({ action: 'hold', etag: '"a9"' });
    expect(decision.action === 'hold' && decision.detail).toMatch(
      /may have been written after the delete/,
    );
  });

  it('holds a delete whose destination was written within a second before it (it may have raced it)', () => {
    const decision = decide(
      deleted({
        t: { eventTime: new Date(later(11).getTime() + 300).toISOString() },
        destination: head('"a9"', later(10)),
      }),
    );
    expect(decision).toMatchObject({ action: 'hold', etag: '"a9"' });
  });

  it('holds a delete of an S3 multipart object dated less than an hour before it (S3 dates it from the upload start)', () => {
    const multipart = head('"abc-3"', later(10));
    const soon = deleted({ t: { sourceSide: 'azure', eventTime: later(600).toISOString() } });
    expect(decide({ ...soon, destination: multipart })).toMatchObject({
      action: 'hold',
      etag: '"abc-3"',
    });
    const late = deleted({ t: { sourceSide: 'azure', eventTime: later(4000).toISOString() } });
    expect(decide({ ...late, destination: multipart })).toMatchObject({ action: 'delete' });
  });

  it('keeps an S3 multipart object whose upload started after the delete', () => {
    const multipart = head('"abc-3"', later(20));
    const decision = decide(
      deleted({
        t: { sourceSide: 'azure', eventTime: later(10).toISOString() },
        destination: multipart,
      }),
    );
    expect(decision).toMatchObject({ action: 'skip', reason: 'diverged' });
  });

  it('deletes a held version once its hold is over and no event carried it across', () => {
    const multipart = head('"abc-3"', later(10));
    const task = deleted({ t: { sourceSide: 'azure', eventTime: later(600).toISOString() } });
    expect(
      decide({ ...task, destination: multipart, held: { etag: '"abc-3"', over: false } }),
    ).toMatchObject({ action: 'hold' });
    expect(
      decide({ ...task, destination: multipart, held: { etag: '"abc-3"', over: true } }),
    ).toEqual({ action: 'delete', condition: { kind: 'match', etag: '"abc-3"' } });
  });

  it('keeps a version written while the delete was held (another eTag than the one held on)', () => {
    const rewritten = head('"abc-4"', later(10));
    const decision = decide({
      ...deleted({ t: { sourceSide: 'azure', eventTime: later(600).toISOString() } }),
      destination: rewritten,
      held: { etag: '"abc-3"', over: true },
    });
    expect(decision).toMatchObject({ action: 'skip', reason: 'diverged' });
    expect(decision.action === 'skip' && decision.detail).toMatch(/while the delete at .* waited/);
  });

  it('replicates a rollback that restored our replica of an older version, dated by the rollback', () => {
    // S3 v1 is our replica of Azure's a1; Azure now holds a user's a2; a user deleted S3's v2.
    const restored = replica('"s1"', 'azure', '"a1"', {
      marker: { replicatedAt: T0.toISOString() },
      head: { lastModified: T0 },
    });
    const decision = decide(
      deleted({
        t: { writtenBy: 'user', eventTime: later(100).toISOString() },
        source: restored,
        destination: head('"a2"', later(50)),
      }),
    );
    expect(decision).toMatchObject({
      action: 'copy',
      condition: { kind: 'match', etag: '"a2"' },
      conflict: true,
    });
  });

  it('keeps a replica a user rewrote (keeping the marker) after the delete', () => {
    const rewritten = replica('"a2"', 's3', '"s1"', { head: { size: 7, lastModified: later(50) } });
    const decision = decide(
      deleted({ t: { eventTime: later(10).toISOString() }, destination: rewritten }),
    );
    expect(decision).toMatchObject({ action: 'skip', reason: 'diverged' });
  });

  it('keeps everything when the rule does not mirror deletes', () => {
    expect(
      decide(deleted({ mirrorDeletes: false, destination: replica('"a1"', 's3', '"s1"') })),
    ).toMatchObject({ action: 'skip', reason: 'excluded' });
  });

  it('re-checks a source that exists again and replicates it when the destination lacks it', () => {
    // A versioned rollback: only ObjectRemoved is sent, and an older version is current.
    const restored = head('"s0"', later(-3600));
    const stale = replica('"a2"', 's3', '"s2"');
    expect(decide(deleted({ source: restored, destination: stale }))).toMatchObject({
      action: 'copy',
      condition: { kind: 'match', etag: '"a2"' },
    });
    expect(decide(deleted({ source: restored, destination: undefined }))).toMatchObject({
      action: 'copy',
      condition: { kind: 'absent' },
    });
    expect(
      decide(deleted({ source: restored, destination: replica('"a0"', 's3', '"s0"') })),
    ).toMatchObject({ reason: 'up-to-date' });
  });

  it('deletes both sides when a copy wrote the file back before the newer delete was handled', () => {
    // Azure's replica was deleted at +100 s; S3's older version (+10 s) had meanwhile been
    // copied back to Azure by a task that ran first.
    const original = head('"s1"', later(10));
    const writtenBack = replica('"a2"', 's3', '"s1"', {
      marker: { replicatedAt: later(101).toISOString() },
      head: { lastModified: later(101) },
    });
    const decision = decide(
      deleted({ t: { sourceSide: 'azure' }, source: writtenBack, destination: original }),
    );
    expect(decision).toEqual({
      action: 'delete',
      condition: { kind: 'match', etag: '"s1"' },
      sourceCondition: { kind: 'match', etag: '"a2"' },
    });
    // A version written after the delete is kept, and its replica with it.
    const newer = head('"s1"', later(200));
    expect(
      decide(deleted({ t: { sourceSide: 'azure' }, source: writtenBack, destination: newer })),
    ).toMatchObject({ action: 'skip', reason: 'replica' });
    // A user's copy of a replica made before the delete (it keeps that replica's marker, but
    // is dated later) is the user's newer write, not a write-back: it is kept, and copied.
    const userCopy = replica('"a3"', 's3', '"s1"', {
      marker: { replicatedAt: later(50).toISOString() },
      head: { lastModified: later(120) },
    });
    expect(
      decide(deleted({ t: { sourceSide: 'azure' }, source: userCopy, destination: original })),
    ).toMatchObject({ action: 'copy', condition: { kind: 'match', etag: '"s1"' } });
  });

  it('skips a destination already gone', () => {
    expect(decide(deleted({ destination: undefined }))).toMatchObject({ reason: 'up-to-date' });
  });
});

describe('Function: markerNames / contentIntact / looksLikeEcho', () => {
  it('matches the rule, origin and source key of a marker', () => {
    const marker = readReplicaMarker(replica('"a1"', 's3', '"s1"').metadata);
    if (!marker) throw new Error('no marker');
    expect(markerNames(marker, RULE, 's3', 'bucket', 'k')).toBe(true);
    expect(markerNames(marker, RULE, 'azure', 'bucket', 'k')).toBe(false);
    expect(markerNames(marker, RULE, 's3', 'bucket', 'k2')).toBe(false);
    expect(markerNames(marker, 'other', 's3', 'bucket', 'k')).toBe(false);
  });

  it('takes an object dated well after its marker was written for a rewrite', () => {
    const marker: ReplicaMarker = {
      origin: 's3',
      sourceEtag: '"s1"',
      sourceLastModified: T0.toISOString(),
      replicatedAt: T0.toISOString(),
    };
    expect(contentIntact(head('"x"', later(2)), marker)).toBe(true);
    expect(contentIntact(head('"x"', later(-1)), marker)).toBe(true);
    expect(contentIntact(head('"x"', later(31)), marker)).toBe(false);
    expect(contentIntact(head('"x"', later(-10)), marker)).toBe(false);
  });

  it('compares size and, where both are known, MD5', () => {
    const marker: ReplicaMarker = {
      origin: 's3',
      sourceEtag: '"s1"',
      sourceLastModified: T0.toISOString(),
      size: 1,
      contentMd5: MD5.one,
    };
    expect(contentIntact(head('"x"'), marker)).toBe(true);
    expect(contentIntact(head('"x"', T0, {}, { contentMd5: MD5.one }), marker)).toBe(true);
    expect(contentIntact(head('"x"', T0, {}, { contentMd5: MD5.two }), marker)).toBe(false);
    expect(contentIntact(head('"x"', T0, {}, { size: 2 }), marker)).toBe(false);
  });

  it('calls a source an echo only without a matching user event', () => {
    const source = replica('"a1"', 's3', '"s1"');
    expect(looksLikeEcho(task({ sourceSide: 'azure' }), source)).toBe(true);
    expect(
      looksLikeEcho(task({ sourceSide: 'azure', writtenBy: 'user', etag: '"a1"' }), source),
    ).toBe(false);
    expect(looksLikeEcho(task({ sourceSide: 's3' }), source)).toBe(false);
  });
});

describe('Function: sourceRef', () => {
  it('names a container and key in printable ASCII, and long ones by digest', () => {
    expect(sourceRef('bucket', 'a dir/ü+x.txt')).toBe('bucket/a%20dir/%C3%BC%2Bx.txt');
    const long = sourceRef('bucket', 'k'.repeat(600));
    expect(long).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(sourceRef('bucket', 'k'.repeat(600))).toBe(long);
    expect(sourceRef('bucket', `${'k'.repeat(599)}j`)).not.toBe(long);
  });

  it('is written in the marker and read back', () => {
    const native = buildNativeMetadata(
      's3',
      {},
      {
        origin: 'azure',
        sourceEtag: '"a"',
        sourceLastModified: T0.toISOString(),
        rule: 'r1',
        source: sourceRef('c', 'k'),
        size: 12,
        contentMd5: MD5.one,
      },
    );
    expect(native[MARKER_NAMES.source]).toBe('c/k');
    expect(readReplicaMarker(native)).toMatchObject({
      rule: 'r1',
      source: 'c/k',
      size: 12,
      contentMd5: MD5.one,
    });
  });
});

describe('Function: globToRegExp', () => {
  it.each([
    ['raw/**', 'raw/a/b.csv', true],
    ['raw/**', 'other/a', false],
    ['*.csv', 'a.csv', true],
    ['*.csv', 'dir/a.csv', false],
    ['**/*.tmp', 'a/b/c.tmp', true],
    ['**/*.tmp', 'c.tmp', true],
    ['file?.txt', 'file1.txt', true],
    ['a+b(1).txt', 'a+b(1).txt', true],
  ])('%s against %s is %s', (pattern, key, expected) => {
    expect(globToRegExp(pattern).test(key)).toBe(expected);
  });

  it('applies include, then exclude', () => {
    const include = [globToRegExp('data/**')];
    const exclude = [globToRegExp('**/*.tmp')];
    expect(keySelected('data/a.csv', include, exclude)).toBe(true);
    expect(keySelected('data/a.tmp', include, exclude)).toBe(false);
    expect(keySelected('other/a.csv', include, exclude)).toBe(false);
    expect(keySelected('anything', [], [])).toBe(true);
  });
});
