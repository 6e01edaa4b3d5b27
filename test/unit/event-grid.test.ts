import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  parseBlobUrl,
  parseEachEventGridEvent,
  parseEventGridDelivery,
} from '../../src/events/event-grid.ts';
import { EventParseError } from '../../src/events/object-event.ts';

const blobCreated = (
  api: string,
  url: string,
  clientRequestId = 'f4c1a9d0-6c55-4b3a-9d43-1b2c3d4e5f60',
) => ({
  id: 'eg-1',
  topic: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct',
  subject: '/blobServices/default/containers/data/blobs/a b.txt',
  eventType: 'Microsoft.Storage.BlobCreated',
  eventTime: '2026-11-22T10:00:00.0000000Z',
  dataVersion: '',
  data: {
    api,
    clientRequestId,
    eTag: '0x8DC0000000000001',
    contentLength: 42,
    sequencer: '00000000000004420000000000028963',
    url,
  },
});

describe('Function: parseEventGridDelivery', () => {
  it('reads BlobCreated in the Event Grid schema', () => {
    const delivered = [
      blobCreated('PutBlockList', 'https://acct.blob.core.windows.net/data/dir/a%20b%2Bc.txt'),
    ];
    const parsed = parseEventGridDelivery(delivered);
    expect(parsed).toEqual({
      events: [
        {
          id: 'eg-1',
          side: 'azure',
          account: 'acct',
          container: 'data',
          key: 'dir/a b+c.txt',
          kind: 'created',
          eventTime: '2026-11-22T10:00:00.0000000Z',
          etag: '"0x8DC0000000000001"',
          size: 42,
          sequencer: '00000000000004420000000000028963',
          operation: 'PutBlockList',
          writtenBy: 'user',
        },
      ],
      items: delivered,
      replicas: [],
      ignored: [],
    });
  });

  it("sets apart the events of the replicator's own requests, by their clientRequestId", () => {
    const own = blobCreated(
      'PutBlobFromUrl',
      'https://acct.blob.core.windows.net/data/replica.txt',
      's3az-replicator-0b7e7a52-3f0e-4d7a-9f55-0a1b2c3d4e5f',
    );
    const user = blobCreated(
      'PutBlob',
      'https://acct.blob.core.windows.net/data/user.txt',
      // Only the prefix counts: a user's id that merely contains it is the user's.
      'my-s3az-replicator-id',
    );
    const parsed = parseEventGridDelivery([own, user]);
    expect(parsed.replicas.map((event) => event.key)).toEqual(['replica.txt']);
    expect(parsed.replicas[0]?.writtenBy).toBe('replicator');
    expect(parsed.events.map((event) => event.key)).toEqual(['user.txt']);
    expect(parsed.events[0]?.writtenBy).toBe('user');
    expect(parsed.items).toEqual([user]);
  });

  it('says nothing of the writer when the event carries no clientRequestId (BlobDeleted, SFTP)', () => {
    const { clientRequestId: _omitted, ...data } = blobCreated(
      'SftpCommit',
      'https://acct.blob.core.windows.net/data/sftp.txt',
    ).data;
    const parsed = parseEventGridDelivery([
      { ...blobCreated('SftpCommit', 'https://acct.blob.core.windows.net/data/sftp.txt'), data },
    ]);
    expect(parsed.events).toHaveLength(1);
    expect(parsed.events[0]).not.toHaveProperty('writtenBy');
  });

  it.each([
    'PutBlob',
    'PutBlockList',
    'CopyBlob',
    'FlushWithClose',
    'PutBlobFromURL',
    'SftpCommit',
  ])('counts BlobCreated from %s as committed', (api) => {
    const parsed = parseEventGridDelivery([
      blobCreated(api, 'https://acct.dfs.core.windows.net/data/f'),
    ]);
    expect(parsed.events).toHaveLength(1);
  });

  it.each(['CreateFile', 'SftpCreate'])(
    'ignores the empty blob %s creates before its data is committed',
    (api) => {
      const parsed = parseEventGridDelivery([
        blobCreated(api, 'https://acct.dfs.core.windows.net/data/f'),
      ]);
      expect(parsed).toEqual({
        events: [],
        items: [],
        replicas: [],
        ignored: [`Microsoft.Storage.BlobCreated:${api}`],
      });
    },
  );

  it('reads CloudEvents 1.0, single and batched', () => {
    const cloudEvent = {
      specversion: '1.0',
      type: 'Microsoft.Storage.BlobDeleted',
      source: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct',
      id: 'ce-1',
      time: '2026-11-22T10:00:00Z',
      subject: '/blobServices/default/containers/data/blobs/k',
      data: {
        api: 'DeleteBlob',
        url: 'https://acct.blob.core.windows.net/data/k',
        sequencer: '01',
      },
    };
    expect(parseEventGridDelivery(cloudEvent).events[0]).toMatchObject({
      id: 'ce-1',
      kind: 'deleted',
      key: 'k',
    });
    expect(parseEventGridDelivery([cloudEvent, { ...cloudEvent, id: 'ce-2' }]).events).toHaveLength(
      2,
    );
  });

  it('reads renames and directory events with their old names', () => {
    const rename = (type: string) => ({
      id: 'r',
      eventType: type,
      eventTime: '2026-11-22T10:00:00Z',
      data: {
        api: 'RenameFile',
        sourceUrl: 'https://acct.dfs.core.windows.net/data/old/name.txt',
        destinationUrl: 'https://acct.dfs.core.windows.net/data/new/name.txt',
      },
    });
    expect(
      parseEventGridDelivery([rename('Microsoft.Storage.BlobRenamed')]).events[0],
    ).toMatchObject({
      kind: 'renamed',
      key: 'new/name.txt',
      sourceKey: 'old/name.txt',
    });
    expect(
      parseEventGridDelivery([rename('Microsoft.Storage.DirectoryRenamed')]).events[0],
    ).toMatchObject({
      kind: 'directory-renamed',
    });
    const deleted = parseEventGridDelivery([
      {
        id: 'd',
        eventType: 'Microsoft.Storage.DirectoryDeleted',
        eventTime: '2026-11-22T10:00:00Z',
        data: { url: 'https://acct.dfs.core.windows.net/data/dir', recursive: 'true' },
      },
    ]);
    expect(deleted.events[0]).toMatchObject({ kind: 'directory-deleted', key: 'dir' });
  });

  it('returns the subscription handshake', () => {
    const parsed = parseEventGridDelivery([
      {
        id: 'v',
        eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
        eventTime: '2026-11-22T10:00:00Z',
        data: { validationCode: 'CODE-123', validationUrl: 'https://example.invalid/validate' },
      },
    ]);
    expect(parsed.validation).toEqual({
      validationCode: 'CODE-123',
      validationUrl: 'https://example.invalid/validate',
    });
    expect(parsed.events).toEqual([]);
  });

  it('lists unknown event types as ignored', () => {
    const parsed = parseEventGridDelivery([
      { id: 't', eventType: 'Microsoft.Storage.BlobTierChanged', eventTime: 'x', data: {} },
    ]);
    expect(parsed).toEqual({
      events: [],
      items: [],
      replicas: [],
      ignored: ['Microsoft.Storage.BlobTierChanged'],
    });
  });

  it.each([
    ['an empty batch', [], /no events/],
    [
      'an event without data',
      [{ id: 'x', eventType: 'Microsoft.Storage.BlobCreated' }],
      /"data" is missing/,
    ],
    [
      'a CloudEvent of another version',
      { specversion: '0.3', type: 't', id: 'i', data: {} },
      /specversion/,
    ],
    ['a blob URL that is not a URL', [blobCreated('PutBlob', 'not a url')], /is not a URL/],
  ])('refuses %s with a typed error', (_label, body, message) => {
    expect(() => parseEventGridDelivery(body)).toThrow(EventParseError);
    expect(() => parseEventGridDelivery(body)).toThrow(message);
  });

  it('never throws anything but EventParseError, whatever the body', () => {
    fc.assert(
      fc.property(fc.anything(), (body) => {
        try {
          parseEventGridDelivery(body);
        } catch (error) {
          expect(error).toBeInstanceOf(EventParseError);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('Function: parseEachEventGridEvent', () => {
  const good = blobCreated('PutBlob', 'https://acct.blob.core.windows.net/data/good.txt');
  const noData = { id: 'x', eventType: 'Microsoft.Storage.BlobCreated' };
  const badUrl = blobCreated('PutBlob', 'not a url');

  it('parses the good events and sets apart each one that does not parse, with its error', () => {
    const parsed = parseEachEventGridEvent([noData, good, 'text', badUrl]);
    expect(parsed.events.map((event) => event.key)).toEqual(['good.txt']);
    expect(parsed.items).toEqual([good]);
    expect(parsed.malformed.map((entry) => entry.item)).toEqual([noData, 'text', badUrl]);
    expect(parsed.malformed.map((entry) => entry.error)).toEqual([
      expect.any(EventParseError),
      expect.any(EventParseError),
      expect.any(EventParseError),
    ]);
    expect(parsed.malformed.map((entry) => entry.error.message)).toEqual([
      expect.stringMatching(/"data" is missing/),
      expect.stringMatching(/event 2 is not an object/),
      expect.stringMatching(/is not a URL/),
    ]);
  });

  it('reads what parseEventGridDelivery reads when every event parses', () => {
    const delivered = [
      good,
      { ...good, id: 'eg-2', eventType: 'Microsoft.Storage.BlobTierChanged' },
    ];
    expect(parseEachEventGridEvent(delivered)).toEqual({
      ...parseEventGridDelivery(delivered),
      malformed: [],
    });
  });

  it('takes one CloudEvent as a batch of one', () => {
    const bad = { specversion: '1.0', id: 'ce', type: 'Microsoft.Storage.BlobCreated' };
    expect(parseEachEventGridEvent(bad).malformed.map((entry) => entry.item)).toEqual([bad]);
  });

  it.each([
    ['an empty batch', [], /no events/],
    ['a number', 5, /not an array of events or an event/],
    ['a string', 'text', /not an array of events or an event/],
    ['null', null, /not an array of events or an event/],
  ])('refuses a body that is %s as a whole', (_label, body, message) => {
    expect(() => parseEachEventGridEvent(body)).toThrow(EventParseError);
    expect(() => parseEachEventGridEvent(body)).toThrow(message);
  });

  it('throws only EventParseError, and only for a body that is not events at all', () => {
    fc.assert(
      fc.property(fc.anything(), (body) => {
        try {
          const parsed = parseEachEventGridEvent(body);
          const count = Array.isArray(body) ? body.length : 1;
          expect(
            parsed.events.length +
              parsed.replicas.length +
              parsed.ignored.length +
              parsed.malformed.length +
              (parsed.validation ? 1 : 0),
          ).toBeLessThanOrEqual(count);
        } catch (error) {
          expect(error).toBeInstanceOf(EventParseError);
          expect(
            Array.isArray(body) ? body.length === 0 : typeof body !== 'object' || body === null,
          ).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('Function: parseBlobUrl', () => {
  it.each([
    [
      'https://acct.blob.core.windows.net/c/a/b.txt',
      { account: 'acct', container: 'c', key: 'a/b.txt' },
    ],
    ['https://acct.dfs.core.windows.net/c/dir', { account: 'acct', container: 'c', key: 'dir' }],
    ['https://acct.blob.core.chinacloudapi.cn/c/k', { account: 'acct', container: 'c', key: 'k' }],
    [
      'http://127.0.0.1:10000/devstoreaccount1/c/x%20y',
      { account: 'devstoreaccount1', container: 'c', key: 'x y' },
    ],
  ])('reads %s', (url, expected) => {
    expect(parseBlobUrl(url)).toEqual(expected);
  });
});
