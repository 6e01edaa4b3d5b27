import { describe, expect, it } from 'vitest';
import { type DecisionInput, decide } from '../../src/core/decide.ts';
import { globToRegExp, keySelected } from '../../src/core/glob.ts';
import { buildNativeMetadata } from '../../src/core/metadata.ts';
import type { ObjectHead, Side } from '../../src/stores/object-store.ts';

const T0 = new Date('2026-11-22T10:00:00Z');
const later = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

function head(etag: string, lastModified = T0, metadata: Record<string, string> = {}): ObjectHead {
  return { key: 'k', size: 1, etag, lastModified, properties: {}, metadata };
}

/** An object the replicator wrote on `side`'s opposite, as a copy of `sourceEtag` from `origin`. */
function replica(
  etag: string,
  origin: Side,
  sourceEtag: string,
  sourceLastModified = T0,
  sourceSequencer?: string,
): ObjectHead {
  const metadata = buildNativeMetadata(
    origin === 's3' ? 'azure' : 's3',
    {},
    {
      origin,
      sourceEtag,
      sourceLastModified: sourceLastModified.toISOString(),
      ...(sourceSequencer !== undefined && { sourceSequencer }),
    },
  );
  return head(etag, later(1), metadata);
}

function input(overrides: Partial<DecisionInput>): DecisionInput {
  return {
    sourceSide: 's3',
    kind: 'created',
    selected: true,
    mirrorDeletes: true,
    tieWinner: 's3',
    source: head('"s1"'),
    destination: undefined,
    ...overrides,
  };
}

describe('Function: decide (created)', () => {
  it('copies to an absent destination with If-None-Match: * (rule 6)', () => {
    expect(decide(input({}))).toEqual({
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

  it('skips a source that is gone', () => {
    expect(decide(input({ source: undefined }))).toMatchObject({
      action: 'skip',
      reason: 'source-gone',
    });
  });

  it('skips the event of a replica, so nothing copies back (rule 2)', () => {
    const azureReplicaOfS3 = replica('"a1"', 's3', '"s1"');
    const decision = decide(
      input({ sourceSide: 'azure', source: azureReplicaOfS3, destination: head('"s1"') }),
    );
    expect(decision).toMatchObject({ action: 'skip', reason: 'replica' });
  });

  it('copies a user overwrite of a replica (it has no marker any more)', () => {
    const decision = decide(
      input({
        sourceSide: 'azure',
        source: head('"a2"', later(5)),
        destination: replica('"s1"', 'azure', '"a1"'),
      }),
    );
    expect(decision).toEqual({
      action: 'copy',
      condition: { kind: 'match', etag: '"s1"' },
      conflict: false,
    });
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

  it('skips an event older than the replica the destination holds, by sequencer (rule 4)', () => {
    const decision = decide(
      input({
        sequencer: '0055AED6DCD90281E5',
        source: head('"s2"', later(10)),
        destination: replica('"a1"', 's3', '"s3"', later(10), '0055AED6DCD90281F0'),
      }),
    );
    expect(decision).toMatchObject({ action: 'skip', reason: 'stale' });
  });

  it('skips when the replica is of a newer source version than the one read now (rule 4)', () => {
    const decision = decide(
      input({ source: head('"s1"', T0), destination: replica('"a2"', 's3', '"s2"', later(30)) }),
    );
    expect(decision).toMatchObject({ action: 'skip', reason: 'stale' });
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
    expect(olderSource).toMatchObject({ action: 'skip', reason: 'stale' });
  });

  it.each([
    ['s3', 'copy'],
    ['azure', 'skip'],
  ] as const)('gives a tie to the configured side (%s wins -> %s)', (tieWinner, action) => {
    const decision = decide(
      input({ tieWinner, source: head('"s1"', T0), destination: head('"a1"', T0) }),
    );
    expect(decision.action).toBe(action);
  });
});

describe('Function: decide (deleted)', () => {
  const deleted = (overrides: Partial<DecisionInput>) =>
    input({ kind: 'deleted', source: undefined, ...overrides });

  it('deletes a replica of the deleted object, conditional on its eTag (rule 7)', () => {
    expect(decide(deleted({ destination: replica('"a1"', 's3', '"s1"') }))).toEqual({
      action: 'delete',
      condition: { kind: 'match', etag: '"a1"' },
    });
  });

  it('keeps a destination the user has rewritten since (rule 7)', () => {
    expect(decide(deleted({ destination: head('"a9"') }))).toMatchObject({
      action: 'skip',
      reason: 'diverged',
    });
  });

  it('keeps everything when the rule does not mirror deletes', () => {
    expect(
      decide(deleted({ mirrorDeletes: false, destination: replica('"a1"', 's3', '"s1"') })),
    ).toMatchObject({
      action: 'skip',
      reason: 'excluded',
    });
  });

  it('skips a delete whose source exists again, and a destination already gone', () => {
    expect(decide(deleted({ source: head('"s2"') }))).toMatchObject({ reason: 'stale' });
    expect(decide(deleted({ destination: undefined }))).toMatchObject({ reason: 'up-to-date' });
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
