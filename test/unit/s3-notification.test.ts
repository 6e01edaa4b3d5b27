import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareSequencers, EventParseError } from '../../src/events/object-event.ts';
import { decodeS3Key, parseS3Notification } from '../../src/events/s3-notification.ts';

function record(eventName: string, key: string, extra: Record<string, unknown> = {}) {
  return {
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    eventTime: '2026-11-22T10:00:00.000Z',
    eventName,
    responseElements: { 'x-amz-request-id': 'REQ1' },
    s3: {
      bucket: { name: 'bucket-a', arn: 'arn:aws:s3:::bucket-a' },
      object: { key, sequencer: '0055AED6DCD90281E5', ...extra },
    },
  };
}

/** How S3 writes keys into notifications: form encoding, spaces as `+`. */
const s3Encode = (key: string) => encodeURIComponent(key).replace(/%20/g, '+');

describe('Function: parseS3Notification', () => {
  it('reads a put straight from S3, with a quoted eTag', () => {
    const body = JSON.stringify({
      Records: [
        record('ObjectCreated:Put', 'a/b+c%2Bd.txt', { size: 12, eTag: 'abc', versionId: 'v1' }),
      ],
    });
    expect(parseS3Notification(body)).toEqual({
      events: [
        {
          id: 'REQ1:0055AED6DCD90281E5',
          side: 's3',
          container: 'bucket-a',
          key: 'a/b c+d.txt',
          kind: 'created',
          eventTime: '2026-11-22T10:00:00.000Z',
          etag: '"abc"',
          size: 12,
          sequencer: '0055AED6DCD90281E5',
          versionId: 'v1',
          operation: 'ObjectCreated:Put',
        },
      ],
      ignored: [],
    });
  });

  it('reads deletes, and marks delete markers of versioned buckets', () => {
    const body = JSON.stringify({
      Records: [
        record('ObjectRemoved:Delete', 'gone'),
        record('ObjectRemoved:DeleteMarkerCreated', 'marked', { versionId: 'dm1' }),
      ],
    });
    const { events } = parseS3Notification(body);
    expect(events.map((e) => [e.kind, e.key, e.deleteMarker ?? false])).toEqual([
      ['deleted', 'gone', false],
      ['deleted', 'marked', true],
    ]);
  });

  it('ignores the test event and events that change no bytes', () => {
    expect(parseS3Notification(JSON.stringify({ Event: 's3:TestEvent', Bucket: 'b' }))).toEqual({
      events: [],
      ignored: ['s3:TestEvent'],
    });
    const tagging = JSON.stringify({ Records: [record('ObjectTagging:Put', 'k')] });
    expect(parseS3Notification(tagging)).toEqual({ events: [], ignored: ['ObjectTagging:Put'] });
  });

  it('unwraps an SNS envelope', () => {
    const inner = JSON.stringify({
      Records: [record('ObjectCreated:CompleteMultipartUpload', 'big.bin')],
    });
    const body = JSON.stringify({ Type: 'Notification', MessageId: 'm1', Message: inner });
    expect(parseS3Notification(body).events[0]).toMatchObject({ key: 'big.bin', kind: 'created' });
  });

  it('reads EventBridge events, whose keys are not URL-encoded', () => {
    const event = (
      type: string,
      object: Record<string, unknown>,
      extra: Record<string, unknown> = {},
    ) =>
      JSON.stringify({
        version: '0',
        id: 'eb-1',
        'detail-type': type,
        source: 'aws.s3',
        time: '2026-11-22T10:00:00Z',
        detail: { bucket: { name: 'bucket-b' }, object: object, ...extra },
      });
    expect(
      parseS3Notification(
        event('Object Created', { key: 'a b+c:d.txt', size: 5, etag: 'e1', sequencer: '01' }),
      ).events[0],
    ).toMatchObject({ id: 'eb-1', key: 'a b+c:d.txt', kind: 'created', etag: '"e1"', size: 5 });
    expect(
      parseS3Notification(
        event(
          'Object Deleted',
          { key: 'k', 'version-id': 'v' },
          { 'deletion-type': 'Delete Marker Created' },
        ),
      ).events[0],
    ).toMatchObject({ kind: 'deleted', deleteMarker: true, versionId: 'v' });
    expect(parseS3Notification(event('Object Restore Completed', { key: 'k' })).ignored).toEqual([
      'Object Restore Completed',
    ]);
  });

  it.each([
    ['not JSON', '{', /not valid JSON/],
    ['not an object', '[1]', /not a JSON object/],
    ['no records', '{"foo":1}', /not an S3 notification/],
    ['a record without s3', '{"Records":[{"eventName":"ObjectCreated:Put"}]}', /s3.bucket/],
    [
      'a bad key encoding',
      JSON.stringify({ Records: [record('ObjectCreated:Put', '%E0%A4%A')] }),
      /not valid URL encoding/,
    ],
  ])('refuses %s with a typed error naming the problem', (_label, body, message) => {
    expect(() => parseS3Notification(body)).toThrow(EventParseError);
    expect(() => parseS3Notification(body)).toThrow(message);
  });

  it('never throws anything but EventParseError, whatever the body', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.jsonValue().map((v) => JSON.stringify({ Records: [v] })),
        ),
        (body) => {
          try {
            parseS3Notification(body);
          } catch (error) {
            expect(error).toBeInstanceOf(EventParseError);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('decodes every key S3 can encode back to itself', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1 }), (key) => {
        expect(decodeS3Key(s3Encode(key))).toBe(key);
      }),
      { numRuns: 500 },
    );
  });
});

describe('Function: parseS3Notification (provenance)', () => {
  const own = ['AWS:AROAOWNROLE:', '*:s3-azure-replicator'];
  const by = (principalId: string | undefined) =>
    JSON.stringify({
      Records: [
        {
          ...record('ObjectCreated:Put', 'k', { eTag: 'e' }),
          ...(principalId !== undefined && { userIdentity: { principalId } }),
        },
      ],
    });

  it.each([
    ['AWS:AROAOWNROLE:my-stack-dev-copy', 'replicator'],
    ['AWS:AROAOTHERROLE:s3-azure-replicator', 'replicator'],
    ['AWS:AROAOTHERROLE:my-stack-dev-copy', 'user'],
    ['AWS:AIDAUSEREXAMPLE', 'user'],
    ['A2QVTU9T5VMOU3', 'user'],
  ])('reads %s as the %s', (principalId, writer) => {
    expect(
      parseS3Notification(by(principalId), { ownS3Principals: own }).events[0]?.writtenBy,
    ).toBe(writer);
  });

  it('says nothing without a principal, or when the own principals are not configured', () => {
    expect(
      parseS3Notification(by(undefined), { ownS3Principals: own }).events[0],
    ).not.toHaveProperty('writtenBy');
    expect(parseS3Notification(by('AWS:AIDAUSEREXAMPLE')).events[0]).not.toHaveProperty(
      'writtenBy',
    );
  });

  it('reads the principal through an SNS envelope', () => {
    const envelope = JSON.stringify({ Type: 'Notification', Message: by('AWS:AROAOWNROLE:x') });
    expect(parseS3Notification(envelope, { ownS3Principals: own }).events[0]?.writtenBy).toBe(
      'replicator',
    );
  });
});

describe('Function: compareSequencers', () => {
  // S3 user guide: "first right pad the shorter value with zeros, and then do a
  // lexicographical comparison" (guides before mid-2021 said left).
  it.each([
    ['0055AED6DCD90281E5', '0055AED6DCD90281E6', -1],
    ['0055AED6DCD90281E5', '0055AED6DCD90281E500', 0],
    ['A', '9F', 1],
    ['9F', 'A', -1],
    ['0100', 'FF', -1],
    ['abc', 'ABC', 0],
  ])('orders %s against %s as %d', (a, b, expected) => {
    expect(Math.sign(compareSequencers(a, b))).toBe(expected);
  });

  it('agrees with numeric order for hex numbers of one length, and ignores zeros padded on the right', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 2n ** 80n }),
        fc.bigInt({ min: 0n, max: 2n ** 80n }),
        fc.nat({ max: 6 }),
        (a, b, zeros) => {
          const expected = a < b ? -1 : a > b ? 1 : 0;
          const left = a.toString(16).padStart(24, '0');
          const right = b.toString(16).padStart(24, '0') + '0'.repeat(zeros);
          expect(Math.sign(compareSequencers(left, right))).toBe(expected);
        },
      ),
    );
  });
});
