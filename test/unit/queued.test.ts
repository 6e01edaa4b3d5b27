import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EventParseError } from '../../src/events/object-event.ts';
import { parseQueuedEvent } from '../../src/events/queued.ts';

describe('Function: parseQueuedEvent', () => {
  it('reads an S3 notification', () => {
    const body = JSON.stringify({
      Records: [
        {
          eventName: 'ObjectCreated:Put',
          eventTime: '2026-11-22T10:00:00Z',
          s3: { bucket: { name: 'b' }, object: { key: 'a+b', size: 1, eTag: 'e' } },
        },
      ],
    });
    expect(parseQueuedEvent(body).events[0]).toMatchObject({ side: 's3', key: 'a b' });
  });

  it('reads an Event Grid event the webhook stored, in either schema', () => {
    const gridEvent = {
      id: 'g',
      eventType: 'Microsoft.Storage.BlobCreated',
      eventTime: '2026-11-22T10:00:00Z',
      data: { api: 'PutBlob', url: 'https://acct.blob.core.windows.net/c/k' },
    };
    expect(parseQueuedEvent(JSON.stringify(gridEvent)).events[0]).toMatchObject({
      side: 'azure',
      key: 'k',
    });
    const cloudEvent = {
      specversion: '1.0',
      id: 'c',
      type: 'Microsoft.Storage.BlobDeleted',
      source: 's',
      data: { url: 'https://acct.blob.core.windows.net/c/k' },
    };
    expect(parseQueuedEvent(JSON.stringify(cloudEvent)).events[0]).toMatchObject({
      kind: 'deleted',
    });
  });

  it("plans an own write's event that reached the queue some other way, for its task to skip", () => {
    const own = {
      id: 'o',
      eventType: 'Microsoft.Storage.BlobCreated',
      eventTime: '2026-11-22T10:00:00Z',
      data: {
        api: 'PutBlob',
        clientRequestId: 's3az-replicator-1',
        url: 'https://acct.blob.core.windows.net/c/k',
      },
    };
    expect(parseQueuedEvent(JSON.stringify(own)).events.map((event) => event.key)).toEqual(['k']);
  });

  it('never throws anything but EventParseError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (body) => {
        try {
          parseQueuedEvent(body);
        } catch (error) {
          expect(error).toBeInstanceOf(EventParseError);
        }
      }),
      { numRuns: 500 },
    );
  });
});
