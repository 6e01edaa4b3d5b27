import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import { accountOf, routeEvents } from '../../src/core/route.ts';
import type { ObjectEvent } from '../../src/events/object-event.ts';

const { rules } = validateConfig({
  rules: [
    {
      name: 'raw',
      s3: { bucket: 'raw-bucket', prefix: 'in/' },
      azure: {
        accountUrl: 'https://acct.blob.core.windows.net',
        container: 'raw',
        prefix: 'landing/',
      },
      exclude: ['**/*.tmp'],
    },
    {
      name: 'one-way',
      direction: 's3-to-azure',
      s3: { bucket: 'exports' },
      azure: { accountUrl: 'https://acct.blob.core.windows.net', container: 'exports' },
    },
  ],
});

const s3Event = (key: string, extra: Partial<ObjectEvent> = {}): ObjectEvent => ({
  id: `id-${key}`,
  side: 's3',
  container: 'raw-bucket',
  key,
  kind: 'created',
  eventTime: '2026-11-22T10:00:00Z',
  ...extra,
});

describe('Function: routeEvents', () => {
  it('maps a key between the prefixes of its rule, both ways', () => {
    const { tasks } = routeEvents(rules, [
      s3Event('in/a/b.csv'),
      { ...s3Event('landing/c.csv'), side: 'azure', container: 'raw', account: 'acct' },
    ]);
    expect(
      tasks.map((t) => [t.sourceSide, t.sourceKey, t.destinationContainer, t.destinationKey]),
    ).toEqual([
      ['s3', 'in/a/b.csv', 'raw', 'landing/a/b.csv'],
      ['azure', 'landing/c.csv', 'raw-bucket', 'in/c.csv'],
    ]);
    expect(tasks[0]?.correlationId).toBe('id-in/a/b.csv');
  });

  it('counts and drops what no rule covers: other buckets, prefixes, accounts, directions', () => {
    const routed = routeEvents(rules, [
      s3Event('out/x'),
      { ...s3Event('in/x'), container: 'elsewhere' },
      { ...s3Event('landing/x'), side: 'azure', container: 'raw', account: 'otheraccount' },
      { ...s3Event('x'), side: 'azure', container: 'exports', account: 'acct' },
    ]);
    expect(routed).toEqual({ tasks: [], directories: [], unrouted: 4 });
  });

  it('leaves excluded keys out', () => {
    expect(routeEvents(rules, [s3Event('in/a/file.tmp')]).tasks).toEqual([]);
  });

  it('collapses events of one key and kind to the newest by sequencer, whatever their order', () => {
    const { tasks } = routeEvents(rules, [
      s3Event('in/k', { id: 'second', sequencer: '0055AED6DCD90281F0' }),
      s3Event('in/k', { id: 'first', sequencer: '0055AED6DCD90281E5' }),
      s3Event('in/k', { id: 'third', sequencer: '0055AED6DCD9028200' }),
      s3Event('in/k', { id: 'gone', sequencer: '0055AED6DCD90281A0', kind: 'deleted' }),
      s3Event('in/k', { id: 'gone again', sequencer: '0055AED6DCD90281F5', kind: 'deleted' }),
    ]);
    expect(tasks.map((t) => [t.kind, t.correlationId])).toEqual([
      ['created', 'third'],
      ['deleted', 'gone again'],
    ]);
  });

  it("keeps a user's delete beside a newer write-back's event of the same key", () => {
    // Prepare: a user deletes in/k; the copy step writes a replica back before the delete's
    // task runs, and the write-back's event (S3 through EventBridge: no writer) is newer.
    const userDelete = s3Event('in/k', {
      id: 'user-delete',
      kind: 'deleted',
      sequencer: '0055AED6DCD90281E5',
      writtenBy: 'user',
    });
    const writeBack = s3Event('in/k', {
      id: 'write-back',
      sequencer: '0055AED6DCD90281F0',
      etag: '"d41d8cd98f00b204e9800998ecf8427e"',
    });

    // Act: both in one batch, in either order.
    const batches = [
      routeEvents(rules, [userDelete, writeBack]),
      routeEvents(rules, [writeBack, userDelete]),
    ];

    // Assess: one task of each kind; the delete's is not dropped for the newer event.
    for (const { tasks } of batches) {
      expect(tasks).toHaveLength(2);
      expect(tasks.find((t) => t.kind === 'deleted')).toMatchObject({
        correlationId: 'user-delete',
        writtenBy: 'user',
        destinationKey: 'landing/k',
      });
      expect(tasks.find((t) => t.kind === 'created')).toMatchObject({
        correlationId: 'write-back',
        etag: writeBack.etag,
      });
    }
  });

  it('collapses by event time where an event has no sequencer', () => {
    const { tasks } = routeEvents(rules, [
      s3Event('in/k', { id: 'later', kind: 'deleted', eventTime: '2026-11-22T10:00:05Z' }),
      s3Event('in/k', { id: 'earlier', kind: 'deleted', eventTime: '2026-11-22T10:00:01Z' }),
    ]);
    expect(tasks.map((t) => t.correlationId)).toEqual(['later']);
  });

  it('turns a rename into a copy of the new name and a delete of the old', () => {
    const { tasks } = routeEvents(rules, [
      {
        ...s3Event('landing/new.csv'),
        side: 'azure',
        container: 'raw',
        account: 'acct',
        kind: 'renamed',
        sourceKey: 'landing/old.csv',
      },
    ]);
    expect(tasks.map((t) => [t.kind, t.sourceKey, t.destinationKey])).toEqual([
      ['created', 'landing/new.csv', 'in/new.csv'],
      ['deleted', 'landing/old.csv', 'in/old.csv'],
    ]);
  });

  it("orders a rename's delete of the old name by its own time, not by the new name's sequencer", () => {
    const rename: ObjectEvent = {
      ...s3Event('landing/new.csv'),
      side: 'azure',
      container: 'raw',
      account: 'acct',
      kind: 'renamed',
      sourceKey: 'landing/old.csv',
      sequencer: '00000000000000000000000000000FFF0000000000000001',
    };
    const { tasks } = routeEvents(rules, [rename]);
    expect(tasks.find((t) => t.kind === 'created')?.sequencer).toBe(rename.sequencer);
    expect(tasks.find((t) => t.kind === 'deleted')).not.toHaveProperty('sequencer');
  });

  it("routes a rename across rules: the new name to its rule, the old name's delete to the other", () => {
    const { rules: two } = validateConfig({
      rules: ['a', 'b'].map((name) => ({
        name,
        s3: { bucket: `bucket-${name}` },
        azure: {
          accountUrl: 'https://acct.blob.core.windows.net',
          container: 'data',
          prefix: `${name}/`,
        },
      })),
    });
    const moved: ObjectEvent = {
      ...s3Event('b/x.csv'),
      side: 'azure',
      container: 'data',
      account: 'acct',
      kind: 'renamed',
      sourceKey: 'a/x.csv',
    };
    const { tasks } = routeEvents(two, [moved]);
    expect(tasks.map((t) => [t.rule, t.kind, t.sourceKey, t.destinationContainer])).toEqual([
      ['b', 'created', 'b/x.csv', 'bucket-b'],
      ['a', 'deleted', 'a/x.csv', 'bucket-a'],
    ]);
    // A directory moved from one rule's prefix to the other's concerns both.
    const { directories } = routeEvents(two, [
      { ...moved, key: 'b/dir', sourceKey: 'a/dir', kind: 'directory-renamed' },
    ]);
    expect(directories.map((d) => d.rule)).toEqual(['a', 'b']);
  });

  it('passes directory events on for expansion', () => {
    const { directories } = routeEvents(rules, [
      {
        ...s3Event('landing/dir'),
        side: 'azure',
        container: 'raw',
        account: 'acct',
        kind: 'directory-deleted',
      },
    ]);
    expect(directories).toEqual([
      expect.objectContaining({ rule: 'raw', kind: 'directory-deleted', directory: 'landing/dir' }),
    ]);
  });
});

describe('Function: accountOf', () => {
  it.each([
    ['https://acct.blob.core.windows.net', 'acct'],
    ['https://acct.dfs.core.windows.net/', 'acct'],
    ['http://127.0.0.1:10000/devstoreaccount1', 'devstoreaccount1'],
  ])('reads %s', (url, account) => {
    expect(accountOf(url)).toBe(account);
  });
});
