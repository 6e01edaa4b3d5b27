import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import type { ReplicationRule } from '../../src/config/schema.ts';
import {
  compareKeys,
  type KeyOrder,
  type KeyPair,
  ListingMerge,
  ListingOrderError,
} from '../../src/core/listing-merge.ts';
import { buildNativeMetadata, type ReplicaMarker, sourceRef } from '../../src/core/metadata.ts';
import {
  compareKey,
  deleteAllowance,
  deleteStops,
  type KeyVerdict,
  type ObjectState,
} from '../../src/core/reconcile.ts';
import { UsageError } from '../../src/errors.ts';
import { EventParseError } from '../../src/events/object-event.ts';
import {
  newReconcileState,
  parseReconcileContinuation,
  reconcileContinuationMessage,
} from '../../src/queue/reconcile.ts';
import { parseReconcileRequest } from '../../src/queue/reconcile-request.ts';
import type { Side } from '../../src/stores/object-store.ts';

const T0 = new Date('2026-11-22T10:00:00Z');
const later = (seconds: number) => new Date(T0.getTime() + seconds * 1000);
const ORIGIN = { eventTime: '2026-11-22T12:00:00.000Z', correlationId: 'reconcile:test' };
const MD5 = { one: 'AAAAAAAAAAAAAAAAAAAAAA==', two: 'BBBBBBBBBBBBBBBBBBBBBB==' };

function ruleOf(fields: Record<string, unknown> = {}): ReplicationRule {
  const rule = validateConfig({
    rules: [
      {
        name: 'r',
        s3: { bucket: 'bucket', prefix: 'in/' },
        azure: {
          accountUrl: 'https://acct.blob.core.windows.net',
          container: 'cont',
          prefix: 'from-s3/',
        },
        deletes: 'mirror',
        ...fields,
      },
    ],
  }).rules[0];
  if (!rule) throw new Error('no rule');
  return rule;
}

const RULE = ruleOf();
const KEY = { s3: 'in/a/report.csv', azure: 'from-s3/a/report.csv' };
const CONTAINER = { s3: 'bucket', azure: 'cont' };

/** A user's object (no marker) on `side`; `metadata: undefined` as an S3 listing gives it. */
function user(
  side: Side,
  etag: string,
  lastModified = T0,
  extra: Partial<ObjectState> = {},
): ObjectState {
  return { key: KEY[side], size: 10, etag, lastModified, metadata: {}, ...extra };
}

/** This rule's intact replica on `side` of the other side's object at `sourceEtag`. */
function replica(
  side: Side,
  etag: string,
  sourceEtag: string,
  marker: Partial<ReplicaMarker> = {},
  extra: Partial<ObjectState> = {},
): ObjectState {
  const origin: Side = side === 's3' ? 'azure' : 's3';
  const metadata = buildNativeMetadata(side, {}, {
    origin,
    sourceEtag,
    sourceLastModified: T0.toISOString(),
    rule: 'r',
    source: sourceRef(CONTAINER[origin], KEY[origin]),
    size: 10,
    replicatedAt: T0.toISOString(),
    ...marker,
  } as ReplicaMarker);
  return { key: KEY[side], size: 10, etag, lastModified: later(1), metadata, ...extra };
}

/** The object as a listing shows it: S3 listings carry no metadata. */
const listed = (object: ObjectState): ObjectState => {
  const { metadata: _metadata, ...rest } = object;
  return rest;
};

/** The verdict, with a task reduced to what identifies it. */
function verdictOf(
  pair: { s3?: ObjectState; azure?: ObjectState },
  rule: ReplicationRule = RULE,
): unknown {
  const verdict: KeyVerdict = compareKey(rule, pair, ORIGIN);
  if (verdict.verdict !== 'difference') return verdict;
  const { task } = verdict;
  return {
    difference: verdict.difference,
    kind: task.kind,
    from: task.sourceSide,
    sourceKey: task.sourceKey,
    destinationKey: task.destinationKey,
  };
}

const copyFrom = (side: Side, difference: string) => ({
  difference,
  kind: 'created',
  from: side,
  sourceKey: KEY[side],
  destinationKey: KEY[side === 's3' ? 'azure' : 's3'],
});
const deleteFrom = (side: Side) => ({
  difference: 'deleted',
  kind: 'deleted',
  from: side,
  sourceKey: KEY[side],
  destinationKey: KEY[side === 's3' ? 'azure' : 's3'],
});

describe('Function: compareKey', () => {
  it.each([
    {
      name: 'an Azure replica of the S3 version: in sync without reading S3',
      pair: { s3: listed(user('s3', '"e1"')), azure: replica('azure', '"z1"', '"e1"') },
      expected: { verdict: 'in-sync' },
    },
    {
      name: 'the same size and MD5 (an S3 ETag that is the MD5): in sync',
      pair: {
        s3: listed(user('s3', '"000102030405060708090a0b0c0d0e0f"')),
        azure: user('azure', '"z1"', T0, { contentMd5: 'AAECAwQFBgcICQoLDA0ODw==' }),
      },
      expected: { verdict: 'in-sync' },
    },
    {
      name: 'an S3 object without its metadata, next to an Azure original: read it first',
      pair: { s3: listed(replica('s3', '"e1"', '"z1"')), azure: user('azure', '"z1"') },
      expected: { verdict: 'needs-metadata', side: 's3' },
    },
    {
      name: 'an S3 replica of the Azure version: in sync',
      pair: { s3: replica('s3', '"e1"', '"z1"'), azure: user('azure', '"z1"') },
      expected: { verdict: 'in-sync' },
    },
    {
      name: 'an object on S3 only: missing on Azure',
      pair: { s3: user('s3', '"e1"') },
      expected: copyFrom('s3', 'missing-on-azure'),
    },
    {
      name: 'an S3 object alone without its metadata: read it first',
      pair: { s3: listed(user('s3', '"e1"')) },
      expected: { verdict: 'needs-metadata', side: 's3' },
    },
    {
      name: 'an object on Azure only: missing on S3',
      pair: { azure: user('azure', '"z1"') },
      expected: copyFrom('azure', 'missing-on-s3'),
    },
    {
      name: 'a replica on Azure whose S3 original is gone: deleted',
      pair: { azure: replica('azure', '"z1"', '"e1"') },
      expected: deleteFrom('s3'),
    },
    {
      name: 'a replica on S3 whose Azure original is gone: deleted',
      pair: { s3: replica('s3', '"e1"', '"z1"') },
      expected: deleteFrom('azure'),
    },
    {
      name: 'an Azure replica of an earlier S3 version: stale, copied from S3',
      pair: { s3: user('s3', '"e2"', later(60)), azure: replica('azure', '"z1"', '"e1"') },
      expected: copyFrom('s3', 'stale'),
    },
    {
      name: 'an S3 replica of an earlier Azure version: stale, copied from Azure',
      pair: { s3: replica('s3', '"e1"', '"z1"'), azure: user('azure', '"z2"', later(60)) },
      expected: copyFrom('azure', 'stale'),
    },
    {
      name: 'two users wrote both sides, S3 last: diverged, S3 wins',
      pair: { s3: user('s3', '"e1"', later(5)), azure: user('azure', '"z1"', T0) },
      expected: copyFrom('s3', 'diverged'),
    },
    {
      name: 'two users wrote both sides, Azure last: diverged, Azure wins',
      pair: { s3: user('s3', '"e1"', T0), azure: user('azure', '"z1"', later(5)) },
      expected: copyFrom('azure', 'diverged'),
    },
    {
      name: 'two users wrote both sides in the same second: the rule gives a tie to S3',
      pair: { s3: user('s3', '"e1"', T0), azure: user('azure', '"z1"', T0) },
      expected: copyFrom('s3', 'diverged'),
    },
    {
      name: 'a user rewrote the Azure replica, keeping its marker: diverged, the rewrite wins',
      pair: {
        s3: user('s3', '"e1"', T0),
        azure: replica('azure', '"z2"', '"e1"', {}, { size: 99, lastModified: later(3600) }),
      },
      expected: copyFrom('azure', 'diverged'),
    },
    {
      name: 'a same-size rewrite of the Azure replica within seconds shows in its MD5: diverged',
      pair: {
        s3: user('s3', '"e1"', T0),
        azure: replica('azure', '"z2"', '"e1"', { contentMd5: MD5.one }, { contentMd5: MD5.two }),
      },
      expected: copyFrom('azure', 'diverged'),
    },
    {
      name: "another rule's replica alone is no replica of this key: missing",
      pair: { azure: replica('azure', '"z1"', '"e1"', { rule: 'other' }) },
      expected: copyFrom('azure', 'missing-on-s3'),
    },
    {
      name: 'a key ending in "/" is a folder, left alone',
      pair: { s3: { ...user('s3', '"e1"'), key: 'in/dir/' } },
      expected: { verdict: 'ignored', reason: 'folder-marker' },
    },
    {
      name: 'an ADLS Gen2 directory blob is a folder, left alone',
      pair: { azure: user('azure', '"z1"', T0, { metadata: { hdi_isfolder: 'true' } }) },
      expected: { verdict: 'ignored', reason: 'folder-marker' },
    },
  ])('$name', ({ pair, expected }) => {
    expect(verdictOf(pair)).toEqual(expected);
  });

  it("leaves alone what the rule's direction, patterns or deletes setting do not replicate", () => {
    const oneWay = ruleOf({ direction: 's3-to-azure' });
    expect(verdictOf({ azure: user('azure', '"z1"') }, oneWay)).toEqual({
      verdict: 'ignored',
      reason: 'direction',
    });
    // Events would leave it too: the S3 side's task would meet the newer Azure write.
    expect(
      verdictOf({ s3: user('s3', '"e1"', T0), azure: user('azure', '"z1"', later(5)) }, oneWay),
    ).toEqual({ verdict: 'ignored', reason: 'direction' });
    expect(verdictOf({ s3: user('s3', '"e1"') }, oneWay)).toEqual(
      copyFrom('s3', 'missing-on-azure'),
    );
    expect(verdictOf({ s3: user('s3', '"e1"') }, ruleOf({ exclude: ['a/**'] }))).toEqual({
      verdict: 'ignored',
      reason: 'excluded',
    });
    expect(
      verdictOf({ azure: replica('azure', '"z1"', '"e1"') }, ruleOf({ deletes: 'ignore' })),
    ).toEqual({ verdict: 'ignored', reason: 'deletes-not-mirrored' });
  });

  it('leaves a recent S3 multipart object on S3 only to the events (a delete of its replica may be waiting)', () => {
    // ORIGIN is two hours after T0; the grace is an hour and a quarter.
    const recent = user('s3', '"e1-3"', later(7200 - 600));
    expect(verdictOf({ s3: recent })).toEqual({ verdict: 'ignored', reason: 'recent' });
    expect(verdictOf({ s3: user('s3', '"e1-3"', later(7200 - 5000)) })).toEqual(
      copyFrom('s3', 'missing-on-azure'),
    );
    // A single-request object is dated by its write; and without mirrored deletes, nothing waits.
    expect(verdictOf({ s3: user('s3', '"e1"', later(7200 - 600)) })).toEqual(
      copyFrom('s3', 'missing-on-azure'),
    );
    expect(verdictOf({ s3: recent }, ruleOf({ deletes: 'ignore' }))).toEqual(
      copyFrom('s3', 'missing-on-azure'),
    );
  });

  it('names the run in every task, with its time', () => {
    const verdict = compareKey(RULE, { s3: user('s3', '"e1"') }, ORIGIN);
    expect(verdict).toMatchObject({
      verdict: 'difference',
      task: {
        rule: 'r',
        sourceContainer: 'bucket',
        destinationContainer: 'cont',
        eventTime: ORIGIN.eventTime,
        correlationId: 'reconcile:test',
      },
    });
  });
});

describe('Function: deleteStops', () => {
  it('stops a side whose deletes exceed the fraction of its objects, and only that side', () => {
    expect(deleteStops({ s3: 100, azure: 100 }, { s3: 10, azure: 11 }, 0.1)).toEqual([
      { side: 'azure', deletes: 11, objects: 100 },
    ]);
    expect(deleteStops({ s3: 0, azure: 5 }, { s3: 0, azure: 0 }, 0.1)).toEqual([]);
    expect(deleteStops({ s3: 5, azure: 5 }, { s3: 1, azure: 0 }, 0)).toHaveLength(1);
    expect(deleteAllowance(1234, 0.1)).toBe(123);
  });
});

describe('Function: compareKeys', () => {
  it('orders as each store lists', () => {
    const sorted = (order: KeyOrder, keys: string[]) =>
      [...keys].sort((a, b) => compareKeys(order, a, b));
    const keys = ['A-B', 'A/dat1', 'A', 'AB.txt', 'AB/dat4', 'AB'];
    expect(sorted('binary', keys)).toEqual(['A', 'A-B', 'A/dat1', 'AB', 'AB.txt', 'AB/dat4']);
    expect(sorted('tree', keys)).toEqual(['A', 'A/dat1', 'A-B', 'AB', 'AB/dat4', 'AB.txt']);
    // U+FF5E (fullwidth tilde) is below U+1F600 in UTF-8, above its surrogates in UTF-16.
    expect(sorted('binary', ['\u{1F600}', '\uFF5E'])).toEqual(['\uFF5E', '\u{1F600}']);
    expect(sorted('utf16', ['\u{1F600}', '\uFF5E'])).toEqual(['\u{1F600}', '\uFF5E']);
  });
});

interface Item {
  key: string;
}

/** Runs a merge of two listings, paged and interleaved as `schedule` says. */
function mergeAll(
  s3Keys: string[],
  azureKeys: string[],
  pageSizes: { s3: number; azure: number },
  schedule: boolean[],
): KeyPair<Item>[] {
  const merge = new ListingMerge<Item>(
    { s3: 'p/', azure: 'q/' },
    { s3: 's3://b/p/', azure: 'az://c/q/' },
  );
  const lists = {
    s3: s3Keys.map((key) => ({ key: `p/${key}` })),
    azure: azureKeys.map((key) => ({ key: `q/${key}` })),
  };
  const at = { s3: 0, azure: 0 };
  const out: KeyPair<Item>[] = [];
  let step = 0;
  while (!merge.done('s3') || !merge.done('azure')) {
    let side: Side = schedule[step++ % Math.max(1, schedule.length)] ? 's3' : 'azure';
    if (merge.done(side)) side = side === 's3' ? 'azure' : 's3';
    const page = lists[side].slice(at[side], at[side] + pageSizes[side]);
    at[side] += page.length;
    out.push(...merge.add(side, page));
    if (at[side] >= lists[side].length) out.push(...merge.finish(side));
  }
  return out;
}

describe('Class: ListingMerge', () => {
  const key = fc.stringMatching(/^[a-c/.\-Z]{1,6}$/);

  it('hands out every key once, with what each side holds, whatever order each side lists in', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(key, { maxLength: 40 }),
        fc.uniqueArray(key, { maxLength: 40 }),
        fc.constantFrom<KeyOrder>('binary', 'utf16', 'tree'),
        fc.constantFrom<KeyOrder>('binary', 'utf16', 'tree'),
        fc.record({ s3: fc.integer({ min: 1, max: 7 }), azure: fc.integer({ min: 1, max: 7 }) }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 20 }),
        (s3Keys, azureKeys, s3Order, azureOrder, pageSizes, schedule) => {
          const s3 = [...s3Keys].sort((a, b) => compareKeys(s3Order, a, b));
          const azure = [...azureKeys].sort((a, b) => compareKeys(azureOrder, a, b));
          const pairs = mergeAll(s3, azure, pageSizes, schedule);
          const seen = pairs.map((pair) => pair.relative).sort();
          const all = [...new Set([...s3Keys, ...azureKeys])].sort();
          expect(seen).toEqual(all);
          for (const pair of pairs) {
            expect(pair.s3?.key).toBe(
              s3Keys.includes(pair.relative) ? `p/${pair.relative}` : undefined,
            );
            expect(pair.azure?.key).toBe(
              azureKeys.includes(pair.relative) ? `q/${pair.relative}` : undefined,
            );
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('holds only about a page when both sides list in the same order', () => {
    const keys = Array.from({ length: 5000 }, (_, i) => `k${String(i).padStart(5, '0')}`);
    const merge = new ListingMerge<Item>({ s3: '', azure: '' }, { s3: 's3', azure: 'az' });
    let most = 0;
    for (let start = 0; start < keys.length; start += 100) {
      const page = keys.slice(start, start + 100).map((each) => ({ key: each }));
      merge.add('s3', page);
      most = Math.max(most, merge.pendingCount('s3') + merge.pendingCount('azure'));
      merge.add('azure', page);
    }
    expect(most).toBeLessThanOrEqual(100);
  });

  it('refuses a listing in no order it knows', () => {
    const merge = new ListingMerge<Item>({ s3: '', azure: '' }, { s3: 's3://b/', azure: 'az' });
    expect(() => merge.add('s3', [{ key: 'b' }, { key: 'a' }])).toThrow(ListingOrderError);
  });

  it('goes on from a cursor state, as a follow-up message carries it', () => {
    const first = new ListingMerge<Item>({ s3: '', azure: '' }, { s3: 's3', azure: 'az' });
    expect(first.add('s3', [{ key: 'a' }, { key: 'c' }])).toEqual([]);
    // S3 has passed "b", and Azure has passed "a"; "c" waits for Azure.
    expect(first.add('azure', [{ key: 'b' }])).toEqual([
      { relative: 'b', azure: { key: 'b' } },
      { relative: 'a', s3: { key: 'a' } },
    ]);
    const next = new ListingMerge<Item>(
      { s3: '', azure: '' },
      { s3: 's3', azure: 'az' },
      { s3: first.cursorState('s3'), azure: first.cursorState('azure') },
    );
    for (const item of first.pending('s3')) next.restore('s3', item);
    for (const item of first.pending('azure')) next.restore('azure', item);
    expect(next.pendingCount('s3')).toBe(1);
    expect(next.add('azure', [{ key: 'c' }])).toEqual([
      { relative: 'c', azure: { key: 'c' }, s3: { key: 'c' } },
    ]);
    expect(next.finish('azure')).toEqual([]);
  });
});

describe('Function: parseReconcileContinuation', () => {
  it('reads back what reconcileContinuationMessage wrote, and nothing else', () => {
    const state = newReconcileState({ rules: ['r'], dryRun: true }, T0);
    state.listing = {
      s3: { token: 'opaque', done: false, orders: ['binary'], last: 'a/b', pending: ['in/a/c'] },
      azure: { done: true, orders: ['binary', 'tree'], pending: [] },
    };
    expect(parseReconcileContinuation(reconcileContinuationMessage(state))).toEqual(state);
    expect(parseReconcileContinuation('{"Records":[]}')).toBeUndefined();
    expect(() =>
      parseReconcileContinuation('{"s3azReconcileContinuation":{"request":{}}}'),
    ).toThrow(EventParseError);
  });
});

describe('Function: parseReconcileRequest', () => {
  it('takes every rule by default, and refuses unknown rules and keys', () => {
    expect(parseReconcileRequest({}, ['a', 'b'])).toEqual({ rules: ['a', 'b'] });
    expect(parseReconcileRequest(null, ['a'])).toEqual({ rules: ['a'] });
    expect(
      parseReconcileRequest({ rules: ['b'], dryRun: true, maxDeleteFraction: 0.2 }, ['a', 'b']),
    ).toEqual({ rules: ['b'], dryRun: true, maxDeleteFraction: 0.2 });
    expect(() => parseReconcileRequest({ rules: ['c'] }, ['a'])).toThrow(
      'no rule named "c" in the configuration (rules: a)',
    );
    expect(() => parseReconcileRequest({ dryrun: true }, ['a'])).toThrow(UsageError);
    expect(() => parseReconcileRequest({ maxDeleteFraction: 2 }, ['a'])).toThrow(UsageError);
  });
});
