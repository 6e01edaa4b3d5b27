/**
 * Hostile inputs for the webhook, the plan step and the copy step (fast-check arbitraries),
 * and an in-memory SQS client that refuses what SQS refuses. Used by
 * test/integration/fuzz.test.ts and `npm run bench -- fuzz`.
 */
import {
  ChangeMessageVisibilityCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { APIGatewayProxyEventV2, SQSRecord } from 'aws-lambda';
import fc from 'fast-check';
import { createEventGridHandler } from '../../handlers/eventgrid.ts';
import type { ReplicationRule } from '../../src/config/schema.ts';
import { parseQueuedEvent } from '../../src/events/queued.ts';
import { MAX_BODY_BYTES, MAX_DEPTH } from '../../src/events/webhook.ts';
import type { Telemetry } from '../../src/observe/telemetry.ts';
import { type PlanDependencies, planBatch } from '../../src/queue/plan-batch.ts';
import {
  parseTaskMessage,
  processTaskRecord,
  type TaskRecordDependencies,
} from '../../src/queue/task-record.ts';
import type { Runtime } from '../../src/runtime/runtime.ts';
import type { ObjectStore } from '../../src/stores/object-store.ts';

/** What kind of hostility an input carries (for the counts a run reports). */
export type HostileKind =
  | 'raw-string'
  | 'raw-bytes'
  | 'json-scalar'
  | 'truncated'
  | 'deep-nesting'
  | 'wrong-type'
  | 'duplicate-key'
  | 'oversized'
  | 'hostile-key'
  | 'forged';

/** One hostile body, and what it was made as. */
export interface HostileBody {
  kind: HostileKind;
  body: string;
  /** Set on `raw-bytes`: the body travels base64-encoded (API Gateway's binary form). */
  base64?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Keys

/** Keys no store should be tricked by: path tricks, percent tricks, control characters, lengths. */
export const NASTY_KEYS: readonly string[] = [
  '..',
  '.',
  '../',
  '../../etc/passwd',
  'a/../b',
  'a/./b',
  'a/..',
  '/..',
  '..\\..\\x',
  'a\\b',
  '%2e%2e%2f',
  '%2e%2e/%2e%2e/x',
  '%2E%2E%2F%2E%2E%2F',
  '..%2f..%2f',
  '%zz',
  '%',
  '%%',
  '%2',
  '%u0041',
  '%00',
  '%C0%AE%C0%AE%2F',
  '%ED%A0%80',
  '+',
  ' ',
  'a ',
  'a.',
  'a/',
  '/',
  '//',
  '\u0000',
  'a\u0000b',
  '\u0001\u0002\u0003',
  '\t\n\r',
  '\u001b[31m',
  '\u007f',
  '\u0085',
  '\u2028\u2029',
  '\uFEFF',
  '\uFFFE\uFFFF',
  '\uD800',
  '\uDC00',
  'a\uD83Db',
  '\uDE00\uD83D',
  '😀',
  'x'.repeat(1025),
  'é'.repeat(513),
  '😀'.repeat(300),
  `${'a/'.repeat(600)}b`,
  'k'.repeat(4096),
];

/** One code unit of a lone surrogate. */
const loneSurrogate = fc
  .integer({ min: 0xd800, max: 0xdfff })
  .map((code) => String.fromCharCode(code));
/** A control character, NUL included. */
const controlCharacter = fc
  .oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f }))
  .map((code) => String.fromCharCode(code));
const percentSequence = fc.constantFrom(
  '%2e',
  '%2E',
  '%2f',
  '%2F',
  '%5c',
  '%zz',
  '%',
  '%0',
  '%00',
  '%ff',
  '%C0%AF',
  '%25',
  '%252e',
);
const segment = fc.oneof(
  fc.constantFrom('..', '.', '', 'a', 'b.txt', '\\', ' '),
  fc.string({ maxLength: 8 }),
  fc.string({ unit: 'binary', maxLength: 6 }),
);

/** A hostile object key: one of `NASTY_KEYS`, or pieces of them joined, or a very long name. */
export const hostileKey: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NASTY_KEYS) },
  {
    weight: 4,
    arbitrary: fc
      .array(fc.oneof(segment, percentSequence, controlCharacter, loneSurrogate), {
        minLength: 1,
        maxLength: 8,
      })
      .chain((parts) =>
        fc.constantFrom(parts.join('/'), parts.join(''), parts.join('/../'), parts.join('%2f')),
      ),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 1025, max: 3000 }), fc.constantFrom('a', 'é', '😀', '%', '/', '.'))
      .map(([length, unit]) => unit.repeat(Math.ceil(length / unit.length))),
  },
);

// ---------------------------------------------------------------------------------------------
// Valid shapes (to cut, mistype, duplicate and forge)

export const ACCOUNT_URL = 'https://fuzzacct.blob.core.windows.net';

/** An Event Grid schema BlobCreated/BlobDeleted event for `key`, its URL as given (not encoded). */
export function eventGridEvent(key: string, url = `${ACCOUNT_URL}/c/${key}`) {
  return {
    topic:
      '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/fuzzacct',
    subject: `/blobServices/default/containers/c/blobs/${key}`,
    eventType: 'Microsoft.Storage.BlobCreated',
    id: 'a3b4c5d6-0000-0000-0000-000000000001',
    eventTime: '2026-11-22T10:00:00.0000000Z',
    dataVersion: '',
    metadataVersion: '1',
    data: {
      api: 'PutBlob',
      clientRequestId: '6d79dbfb-0e37-4fc4-981f-442c9ca65760',
      requestId: '831e1650-001e-001b-66ab-eeb76e000000',
      eTag: '0x8D4BCC2E4835CD0',
      contentType: 'application/octet-stream',
      contentLength: 524288,
      blobType: 'BlockBlob',
      url,
      sequencer: '00000000000004420000000000028963',
      storageDiagnostics: { batchId: 'b68529f3-68cd-4744-baa4-3c0498ec19f0' },
    },
  };
}

/** The same event in the CloudEvents 1.0 schema. */
export function cloudEvent(key: string, url = `${ACCOUNT_URL}/c/${key}`) {
  const { eventType, id, eventTime, data } = eventGridEvent(key, url);
  return {
    specversion: '1.0',
    type: eventType,
    source:
      '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/fuzzacct',
    id,
    time: eventTime,
    subject: `/blobServices/default/containers/c/blobs/${key}`,
    data,
  };
}

/** An S3 notification (as S3 sends it to SQS) for `key`, the key as given (not form-encoded). */
export function s3Notification(key: string, bucket = 'fuzz-bucket') {
  return {
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: 'us-east-1',
        eventTime: '2026-11-22T10:00:00.000Z',
        eventName: 'ObjectCreated:Put',
        userIdentity: { principalId: 'AWS:AIDAEXAMPLE' },
        requestParameters: { sourceIPAddress: '127.0.0.1' },
        responseElements: { 'x-amz-request-id': 'C3D13FE58DE4C810', 'x-amz-id-2': 'local' },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId: 's3az-events',
          bucket: { name: bucket, arn: `arn:aws:s3:::${bucket}` },
          object: {
            key,
            size: 1024,
            eTag: 'd41d8cd98f00b204e9800998ecf8427e',
            sequencer: '0A1B2C',
          },
        },
      },
    ],
  };
}

/** A copy task message body of rule `rule`. */
export function copyTask(
  key: string,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    rule: 'fuzz',
    kind: 'created',
    sourceSide: 's3',
    sourceContainer: 'fuzz-bucket',
    sourceKey: key,
    destinationContainer: 'fuzz-container',
    destinationKey: key,
    sequencer: '0A1B2C',
    eventTime: '2026-11-22T10:00:00.000Z',
    correlationId: 'fuzz',
    ...overrides,
  };
}

/** Which valid shape a hostile body starts from. */
export type Shape = 'event-grid' | 'cloud-event' | 'cloud-event-batch' | 's3' | 'task';

const plainKey = fc.string({ minLength: 1, maxLength: 20 }).filter((key) => key.trim() !== '');

/** A valid body of `shape`, as text. */
export function validBody(shape: Shape): fc.Arbitrary<string> {
  return plainKey.map((raw) => {
    const key = encodeURIComponent(raw);
    switch (shape) {
      case 'event-grid':
        return JSON.stringify([eventGridEvent(key)]);
      case 'cloud-event':
        return JSON.stringify(cloudEvent(key));
      case 'cloud-event-batch':
        return JSON.stringify([cloudEvent(key), cloudEvent(`${key}2`)]);
      case 's3':
        return JSON.stringify(s3Notification(key));
      default:
        return JSON.stringify(copyTask(raw));
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Hostile bodies

const rawString: fc.Arbitrary<HostileBody> = fc
  .oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.string({
      unit: fc.oneof(
        loneSurrogate,
        controlCharacter,
        fc.constantFrom('{', '[', '"', ':', ',', '}', ']', '\\'),
      ),
      maxLength: 100,
    }),
    fc.constantFrom(
      '',
      ' ',
      'null',
      'true',
      '{',
      '[',
      '"',
      '[]',
      '{}',
      '[[]]',
      '[null]',
      '[1,2]',
      'NaN',
      '\uFEFF[]',
      '\u0000',
    ),
  )
  .map((body) => ({ kind: 'raw-string' as const, body }));

const rawBytes: fc.Arbitrary<HostileBody> = fc.uint8Array({ maxLength: 300 }).map((bytes) => ({
  kind: 'raw-bytes' as const,
  body: Buffer.from(bytes).toString('base64'),
  base64: true,
}));

const jsonScalar: fc.Arbitrary<HostileBody> = fc
  .oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom(null, 0, -1, 1e308, '', 'x', true, [], {}))
  .map((value) => ({ kind: 'json-scalar' as const, body: JSON.stringify(value) ?? 'null' }));

/** A valid body cut short at a random point (never whole). */
function truncated(shape: Shape): fc.Arbitrary<HostileBody> {
  return fc
    .tuple(validBody(shape), fc.double({ min: 0, max: 1, noNaN: true }))
    .map(([body, at]) => ({
      kind: 'truncated' as const,
      body: body.slice(0, Math.min(body.length - 1, Math.floor(at * body.length))),
    }));
}

/** `[` or `{"a":` nested `depth` times, closed or left open, alone or as a field of an event. */
export function deeplyNested(depth: number, style: 'array' | 'object', closed = true): string {
  const open = style === 'array' ? '[' : '{"a":';
  const close = style === 'array' ? ']' : '}';
  return `${open.repeat(depth)}1${closed ? close.repeat(depth) : ''}`;
}

function deepNesting(shape: Shape): fc.Arbitrary<HostileBody> {
  return fc
    .record({
      depth: fc.oneof(fc.integer({ min: 100, max: 2000 }), fc.integer({ min: 5000, max: 12_000 })),
      style: fc.constantFrom('array' as const, 'object' as const),
      closed: fc.boolean(),
      where: fc.constantFrom('alone', 'data', 'extra', 'key'),
    })
    .map(({ depth, style, closed, where }) => {
      const deep = deeplyNested(depth, style, closed);
      if (where === 'alone') return { kind: 'deep-nesting' as const, body: deep };
      // Splice the nesting into a valid body in place of one field.
      const marker = '"__DEEP__"';
      const base = shapeValue(shape, 'k');
      const target = targetOf(base, shape);
      if (where === 'data') target.data = '__DEEP__';
      else if (where === 'key') target[shape === 'task' ? 'sourceKey' : 'id'] = '__DEEP__';
      else target.extra = '__DEEP__';
      return { kind: 'deep-nesting' as const, body: JSON.stringify(base).replace(marker, deep) };
    });
}

/** A fresh valid value of `shape` (mutable, for the arbitraries to spoil). */
function shapeValue(shape: Shape, key: string): unknown {
  switch (shape) {
    case 'event-grid':
      return [eventGridEvent(key)];
    case 'cloud-event':
      return cloudEvent(key);
    case 'cloud-event-batch':
      return [cloudEvent(key), cloudEvent(key)];
    case 's3':
      return s3Notification(key);
    case 'task':
      return copyTask(key);
  }
}

/** The record in `value` whose fields the arbitraries change: the (first) event, or the task. */
function targetOf(value: unknown, shape: Shape): Record<string, unknown> {
  if (Array.isArray(value)) return value[0] as Record<string, unknown>;
  if (shape === 's3')
    return (value as { Records: Array<Record<string, unknown>> }).Records[0] as Record<
      string,
      unknown
    >;
  return value as Record<string, unknown>;
}

/** Field paths (from the target record) an arbitrary may mistype, per shape. */
const FIELDS: Record<Shape, string[][]> = {
  'event-grid': [
    ['id'],
    ['eventType'],
    ['eventTime'],
    ['data'],
    ['data', 'url'],
    ['data', 'api'],
    ['data', 'contentLength'],
    ['data', 'eTag'],
    ['data', 'sequencer'],
    ['data', 'clientRequestId'],
  ],
  'cloud-event': [
    ['id'],
    ['type'],
    ['specversion'],
    ['time'],
    ['data'],
    ['data', 'url'],
    ['data', 'api'],
    ['data', 'contentLength'],
    ['data', 'eTag'],
    ['data', 'clientRequestId'],
  ],
  'cloud-event-batch': [['id'], ['type'], ['specversion'], ['data'], ['data', 'url']],
  s3: [
    ['eventName'],
    ['eventTime'],
    ['s3'],
    ['s3', 'bucket'],
    ['s3', 'bucket', 'name'],
    ['s3', 'object'],
    ['s3', 'object', 'key'],
    ['s3', 'object', 'size'],
    ['s3', 'object', 'eTag'],
    ['userIdentity'],
    ['responseElements'],
  ],
  task: [
    ['rule'],
    ['kind'],
    ['sourceSide'],
    ['sourceContainer'],
    ['sourceKey'],
    ['destinationContainer'],
    ['destinationKey'],
    ['sequencer'],
    ['eventTime'],
    ['correlationId'],
    ['writtenBy'],
    ['etag'],
    ['continuation'],
    ['continuation', 'count'],
    ['fanOut'],
  ],
};

const wrongValue = fc.oneof(
  fc.constantFrom(
    null,
    0,
    -1,
    1.5,
    2 ** 53,
    -0,
    true,
    false,
    '',
    ' ',
    [],
    {},
    [null],
    { length: 1 },
    '1.0',
    'Microsoft.Storage.BlobCreated',
    '__proto__',
  ),
  fc.string({ maxLength: 10 }),
  fc.integer(),
  fc.double(),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 }), { maxKeys: 3 }),
);

function wrongType(shape: Shape): fc.Arbitrary<HostileBody> {
  return fc
    .record({
      path: fc.constantFrom(...FIELDS[shape]),
      value: wrongValue,
      remove: fc.boolean(),
      topLevel: fc.constantFrom('keep', 'keep', 'keep', 'object', 'wrap'),
    })
    .map(({ path, value, remove, topLevel }) => {
      const base = shapeValue(shape, 'k') as Record<string, unknown> | unknown[];
      let record = targetOf(base, shape);
      for (const name of path.slice(0, -1)) {
        const next = record[name];
        if (typeof next !== 'object' || next === null) break;
        record = next as Record<string, unknown>;
      }
      const last = path.at(-1) ?? 'id';
      if (remove) delete record[last];
      else record[last] = value;
      const whole =
        topLevel === 'object' && Array.isArray(base)
          ? { ...base }
          : topLevel === 'wrap'
            ? { value: base }
            : base;
      return { kind: 'wrong-type' as const, body: JSON.stringify(whole) };
    });
}

/** A valid body with one field written twice, by hand: JSON.parse keeps the last. */
function duplicateKey(shape: Shape): fc.Arbitrary<HostileBody> {
  return fc
    .record({
      path: fc.constantFrom(...FIELDS[shape]),
      value: wrongValue,
      first: fc.boolean(),
      key: hostileKey,
    })
    .map(({ path, value, first, key }) => {
      const text = JSON.stringify(shapeValue(shape, 'k'));
      const name = path.at(-1) ?? 'id';
      // Every occurrence of the field gets a twin before or after it.
      const pattern = new RegExp(`"${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}":`, 'g');
      const extra = `"${name}":${JSON.stringify(name.toLowerCase().includes('key') || name === 'url' ? key : value) ?? 'null'}`;
      const body = text.replace(pattern, (match) =>
        first ? `${extra},${match}` : `${match}null,${extra},"__dup__":`,
      );
      return { kind: 'duplicate-key' as const, body };
    });
}

/** Bodies just above (or at) the webhook's limit; the SQS-side handlers see them too. */
function oversized(shape: Shape): fc.Arbitrary<HostileBody> {
  return fc
    .record({
      over: fc.integer({ min: 1, max: 4096 }),
      where: fc.constantFrom('padding', 'key', 'junk', 'multibyte'),
    })
    .map(({ over, where }) => {
      const target = MAX_BODY_BYTES + over;
      if (where === 'junk') return { kind: 'oversized' as const, body: 'x'.repeat(target) };
      const base = shapeValue(shape, where === 'key' ? '__PAD__' : 'k');
      if (where !== 'key') targetOf(base, shape).padding = '__PAD__';
      const text = JSON.stringify(base);
      const unit = where === 'multibyte' ? 'é' : 'a';
      const missing = target - Buffer.byteLength(text) + Buffer.byteLength('__PAD__');
      const pad = unit.repeat(Math.ceil(missing / Buffer.byteLength(unit)));
      return { kind: 'oversized' as const, body: text.replace('__PAD__', pad) };
    });
}

/** Valid bodies whose key (URL or S3 key, or task keys) is hostile. */
function withHostileKey(shape: Shape): fc.Arbitrary<HostileBody> {
  return fc
    .record({ key: hostileKey, encode: fc.constantFrom('raw', 'raw', 'uri', 'url-only') })
    .map(({ key, encode }) => {
      const inUrl = encode === 'uri' ? key.split('/').map(safeEncode).join('/') : key;
      let value: unknown;
      switch (shape) {
        case 'event-grid':
          value = [
            eventGridEvent(
              key,
              encode === 'url-only' ? `https://${key}` : `${ACCOUNT_URL}/c/${inUrl}`,
            ),
          ];
          break;
        case 'cloud-event':
        case 'cloud-event-batch':
          value = cloudEvent(key, encode === 'url-only' ? key : `${ACCOUNT_URL}/c/${inUrl}`);
          break;
        case 's3':
          value = s3Notification(
            encode === 'uri' ? inUrl : key,
            encode === 'url-only' ? key : 'fuzz-bucket',
          );
          break;
        case 'task':
          value = copyTask(
            key,
            encode === 'url-only' ? { destinationKey: 'ok', sourceKey: key } : {},
          );
          break;
      }
      return { kind: 'hostile-key' as const, body: JSON.stringify(value) };
    });
}

/** encodeURIComponent, or the text as it is when it holds a lone surrogate. */
function safeEncode(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Hostile bodies starting from `shape`, every kind mixed. `oversized` only when asked: each is
 * over a megabyte.
 */
export function hostileBody(
  shape: Shape,
  options: { oversized?: boolean } = {},
): fc.Arbitrary<HostileBody> {
  return fc.oneof(
    rawString,
    rawBytes,
    jsonScalar,
    truncated(shape),
    { weight: 1, arbitrary: deepNesting(shape) },
    { weight: 3, arbitrary: wrongType(shape) },
    { weight: 2, arbitrary: duplicateKey(shape) },
    { weight: 3, arbitrary: withHostileKey(shape) },
    ...(options.oversized ? [{ weight: 1, arbitrary: oversized(shape) }] : []),
  );
}

/** The body of `input` as the handler reads it (a base64 body decoded, as API Gateway's is). */
export function decodedBody(input: HostileBody): string {
  return input.base64 ? Buffer.from(input.body, 'base64').toString('utf8') : input.body;
}

/** Draws `count` values of `arbitrary`, reproducibly from `seed`. */
export function draw<T>(arbitrary: fc.Arbitrary<T>, count: number, seed: number): T[] {
  return fc.sample(arbitrary, { numRuns: count, seed });
}

// ---------------------------------------------------------------------------------------------
// Webhook authentication variants

/** How a fuzzed delivery is authenticated: the right secret, none, a wrong one, forged others. */
export type AuthVariant =
  | 'valid'
  | 'missing'
  | 'wrong-secret'
  | 'empty-secret'
  | 'secret-in-other-header'
  | 'forged-token';

export const AUTH_VARIANTS: readonly AuthVariant[] = [
  'valid',
  'valid',
  'missing',
  'wrong-secret',
  'empty-secret',
  'secret-in-other-header',
  'forged-token',
];

/** Header and query of a shared-secret delivery of `variant` (`secret` is the right one). */
export function credentialsOf(
  variant: AuthVariant,
  secret: string,
): { headers: Record<string, string>; query: Record<string, string> } {
  switch (variant) {
    case 'valid':
      return { headers: { 'x-s3az-secret': secret }, query: {} };
    case 'missing':
      return { headers: {}, query: {} };
    case 'wrong-secret':
      return { headers: { 'x-s3az-secret': `${secret}x` }, query: { code: secret.slice(1) } };
    case 'empty-secret':
      return { headers: { 'x-s3az-secret': '' }, query: {} };
    case 'secret-in-other-header':
      return {
        headers: { 'x-s3az-secret-2': secret, authorization: `Bearer ${secret}` },
        query: {},
      };
    case 'forged-token':
      return {
        headers: {
          authorization:
            'Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJyb2xlcyI6WyJBenVyZUV2ZW50R3JpZFNlY3VyZVdlYmhvb2tTdWJzY3JpYmVyIl19.',
        },
        query: {},
      };
  }
}

// ---------------------------------------------------------------------------------------------
// SQS records and an in-memory SQS

/** An SQS record as Lambda hands it over. */
export function sqsRecord(body: string, messageId: string, receiveCount = 1): SQSRecord {
  return {
    messageId,
    receiptHandle: `rh-${messageId}`,
    body,
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: '0',
      SenderId: 'fuzz',
      ApproximateFirstReceiveTimestamp: '0',
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:fuzz',
    awsRegion: 'us-east-1',
  };
}

/** A message an in-memory queue stored. */
export interface StoredMessage {
  body: string;
  attributes: Record<string, string>;
}

/** Characters SQS accepts in a message (and, by the same rule, in string attributes). */
const SQS_TEXT = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;
const SQS_MAX_BYTES = 1024 * 1024;

/** An error shaped like the SDK's for a request SQS refuses as the caller's fault. */
function refusal(name: string, message: string): Error {
  return Object.assign(new Error(message), {
    name,
    $fault: 'client',
    $metadata: { httpStatusCode: 400 },
  });
}

/**
 * An in-memory stand-in for the SQS client that applies SQS's own checks (the characters of
 * the body and of string attributes, 1 MiB with the attributes), so a message SQS would refuse
 * is refused here too. Keeps what it stored, by queue URL.
 */
export class MemorySqs {
  readonly queues = new Map<string, StoredMessage[]>();
  /** Refusals, with their reason (what the real SQS would have answered). */
  readonly refused: string[] = [];

  /** As an SQSClient, for code that takes one. */
  get client(): SQSClient {
    return this as unknown as SQSClient;
  }

  messages(queueUrl: string): StoredMessage[] {
    return this.queues.get(queueUrl) ?? [];
  }

  clear(): void {
    this.queues.clear();
    this.refused.length = 0;
  }

  #check(
    body: string,
    attributes: Record<string, { StringValue?: string | undefined }>,
  ): string | undefined {
    if (body === '') return 'MissingParameter: the message body is empty';
    if (!SQS_TEXT.test(body)) return 'InvalidMessageContents: the body has characters SQS refuses';
    let size = Buffer.byteLength(body);
    for (const [name, value] of Object.entries(attributes)) {
      const text = value.StringValue ?? '';
      if (!SQS_TEXT.test(text)) {
        return `InvalidParameterValue: attribute ${name} has characters SQS refuses`;
      }
      size += Buffer.byteLength(name) + Buffer.byteLength('String') + Buffer.byteLength(text);
    }
    if (size > SQS_MAX_BYTES) return `InvalidParameterValue: ${size} bytes, over 1 MiB`;
    return undefined;
  }

  #store(
    queueUrl: string,
    body: string,
    attributes: Record<string, { StringValue?: string | undefined }>,
  ) {
    const list = this.queues.get(queueUrl) ?? [];
    list.push({
      body,
      attributes: Object.fromEntries(
        Object.entries(attributes).map(([name, value]) => [name, value.StringValue ?? '']),
      ),
    });
    this.queues.set(queueUrl, list);
  }

  async send(command: unknown): Promise<unknown> {
    if (command instanceof SendMessageCommand) {
      const input = command.input;
      const attributes = input.MessageAttributes ?? {};
      const why = this.#check(input.MessageBody ?? '', attributes);
      if (why) {
        this.refused.push(why);
        throw refusal(why.split(':')[0] ?? 'InvalidParameterValue', why);
      }
      this.#store(input.QueueUrl ?? '', input.MessageBody ?? '', attributes);
      return { MessageId: 'm' };
    }
    if (command instanceof SendMessageBatchCommand) {
      const input = command.input;
      const entries = input.Entries ?? [];
      const total = entries.reduce(
        (sum, entry) => sum + Buffer.byteLength(entry.MessageBody ?? ''),
        0,
      );
      if (total > SQS_MAX_BYTES) {
        const why = `BatchRequestTooLong: ${total} bytes`;
        this.refused.push(why);
        throw refusal('BatchRequestTooLong', why);
      }
      const failed: Array<{
        Id?: string | undefined;
        Code: string;
        Message: string;
        SenderFault: boolean;
      }> = [];
      const successful: Array<{ Id?: string | undefined }> = [];
      for (const entry of entries) {
        const why = this.#check(entry.MessageBody ?? '', entry.MessageAttributes ?? {});
        if (why) {
          this.refused.push(why);
          failed.push({
            Id: entry.Id,
            Code: why.split(':')[0] ?? '',
            Message: why,
            SenderFault: true,
          });
        } else {
          this.#store(input.QueueUrl ?? '', entry.MessageBody ?? '', entry.MessageAttributes ?? {});
          successful.push({ Id: entry.Id });
        }
      }
      return { Successful: successful, Failed: failed };
    }
    if (command instanceof ChangeMessageVisibilityCommand) return {};
    throw new Error(`MemorySqs: ${(command as object).constructor.name} is not supported`);
  }
}

// ---------------------------------------------------------------------------------------------
// Stores that count writes

/** The calls of an `ObjectStore` (and its optional parts) that write. */
export const WRITE_CALLS: ReadonlySet<string> = new Set([
  'put',
  'putFromUrl',
  'beginStaged',
  'stagePart',
  'stagePartStream',
  'stagePartFromUrl',
  'commitStaged',
  'abortStaged',
  'delete',
]);

/** A store whose writes are counted (and listed, with their key) before they go through. */
export function writeCounting<T extends ObjectStore>(
  store: T,
): { store: T; writes: Array<{ call: string; key: unknown }> } {
  const writes: Array<{ call: string; key: unknown }> = [];
  const wrapped = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      if (typeof property !== 'string' || !WRITE_CALLS.has(property)) return value.bind(target);
      return (...args: unknown[]) => {
        writes.push({ call: property, key: args[0] });
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store: wrapped, writes };
}

// ---------------------------------------------------------------------------------------------
// Tallies

/** Counts by label, for the report of a run. */
export class Tally {
  readonly counts = new Map<string, number>();

  add(label: string, by = 1): void {
    this.counts.set(label, (this.counts.get(label) ?? 0) + by);
  }

  get total(): number {
    let sum = 0;
    for (const value of this.counts.values()) sum += value;
    return sum;
  }

  /** `label count` lines, largest first. */
  lines(indent = '  '): string[] {
    return [...this.counts.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([label, count]) => `${indent}${String(count).padStart(7)}  ${label}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Targets: each runs one input and says what became of it, and what is wrong with that.

/** What became of one input, and every way it broke the contract (empty when it did not). */
export interface Verdict {
  /** The answer: `status 400`, `dead-lettered malformed-event`, `skipped source-gone`, … */
  answer: string;
  violations: string[];
}

/** Whether Azure would store `key` under another name or not at all (independent of src/). */
export function unrepresentableOnAzure(key: string): boolean {
  return (
    key === '' ||
    /[\uD800-\uDFFF]/u.test(key) ||
    key.length > 1024 ||
    key.endsWith('.') ||
    key.endsWith('/') ||
    key.includes('\\') ||
    key.split('/').some((part) => part === '.' || part === '..')
  );
}

/** Whether SQS could hold `body` as a message at all (else no queue ever delivers it). */
export function deliverableBySqs(body: string): boolean {
  return body !== '' && SQS_TEXT.test(body) && Buffer.byteLength(body) <= SQS_MAX_BYTES;
}

const silentLogger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/** Telemetry that keeps the plan step's counts and drops the rest. */
function recordingTelemetry(planned: Array<Parameters<Telemetry['planned']>[0]>): Telemetry {
  return {
    logger: silentLogger,
    planned: (counts: Parameters<Telemetry['planned']>[0]) => planned.push(counts),
    replicaEvents() {},
    ignored() {},
    taskDone() {},
    taskFailed() {},
    taskContinued() {},
  } as unknown as Telemetry;
}

const errorText = (error: unknown) =>
  error instanceof Error ? `${error.name}: ${error.message}`.slice(0, 300) : String(error);

/** The webhook as Lambda runs it (handlers/eventgrid.ts), on queues in memory. */
export class WebhookTarget {
  readonly sqs = new MemorySqs();
  readonly secret = 'fuzz-secret-0123456789';
  readonly #handler = createEventGridHandler(async () => this.#runtime);
  readonly #runtime = {
    sqs: this.sqs.client,
    queueUrl: (name: string) => `memory://${name}`,
    webhookAuth: async () => ({ mode: 'shared-secret', secret: this.secret }),
    telemetry: recordingTelemetry([]),
  } as unknown as Runtime;

  /** Posts `input` with the credentials of `auth`, and judges the answer. */
  async run(input: HostileBody, auth: AuthVariant): Promise<Verdict> {
    this.sqs.clear();
    const { headers, query } = credentialsOf(auth, this.secret);
    const event = {
      version: '2.0',
      routeKey: '$default',
      rawPath: '/eventgrid',
      rawQueryString: new URLSearchParams(query).toString(),
      headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification', ...headers },
      queryStringParameters: query,
      requestContext: { http: { method: 'POST', path: '/eventgrid' } },
      body: input.body,
      isBase64Encoded: input.base64 === true,
    } as unknown as APIGatewayProxyEventV2;
    const violations: string[] = [];
    let result: { statusCode?: number; body?: string };
    try {
      result = (await this.#handler(event)) as { statusCode?: number; body?: string };
    } catch (error) {
      return { answer: 'threw', violations: [`the handler threw: ${errorText(error)}`] };
    }
    const status = result.statusCode ?? 0;
    const expected = expectedWebhookStatus(decodedBody(input), auth);
    if (status !== expected.status) {
      violations.push(
        `status ${status}, expected ${expected.status} (${expected.why}); answer ${String(result.body).slice(0, 300)}`,
      );
    }
    const events = this.sqs.messages('memory://events');
    const deadLetters = this.sqs.messages('memory://eventsDeadLetter');
    if (status !== 200) {
      if (events.length + deadLetters.length > 0) {
        violations.push(
          `refused with ${status}, yet ${events.length + deadLetters.length} messages stored`,
        );
      }
      return { answer: `${status} ${expected.why}`, violations };
    }
    const answer = JSON.parse(result.body ?? '{}') as Record<string, number | string>;
    if ('validationResponse' in answer) {
      if (events.length + deadLetters.length > 0)
        violations.push('handshake answered, yet messages stored');
      return { answer: '200 validation handshake', violations };
    }
    const delivered = expected.delivered ?? 0;
    const accounted =
      Number(answer.stored) +
      Number(answer.ignored) +
      Number(answer.replicas) +
      Number(answer.deadLettered);
    if (accounted !== delivered) {
      violations.push(`${delivered} events delivered, ${accounted} accounted for (${result.body})`);
    }
    if (events.length !== Number(answer.stored)) {
      violations.push(`answered stored ${answer.stored}, the events queue got ${events.length}`);
    }
    if (deadLetters.length !== Number(answer.deadLettered)) {
      violations.push(
        `answered deadLettered ${answer.deadLettered}, the dead-letter queue got ${deadLetters.length}`,
      );
    }
    for (const message of events) {
      try {
        if (parseQueuedEvent(message.body).events.length === 0)
          violations.push('stored an event the plan step reads as none');
      } catch (error) {
        violations.push(`stored an event the plan step cannot parse: ${errorText(error)}`);
      }
    }
    for (const message of deadLetters) {
      if (message.attributes.reason !== 'malformed-event' || !message.attributes.error) {
        violations.push(`dead letter without its reason: ${JSON.stringify(message.attributes)}`);
      }
    }
    const parts = [
      Number(answer.stored) > 0 && 'stored',
      Number(answer.deadLettered) > 0 && 'dead-lettered',
      Number(answer.ignored) > 0 && 'ignored',
      Number(answer.replicas) > 0 && 'replicas',
    ].filter(Boolean);
    return { answer: `200 ${parts.join('+') || 'nothing'}`, violations };
  }
}

/** How deep arrays and objects nest in `value` (a scalar is 0), without recursion. */
function depthOf(value: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop() as [unknown, number];
    if (typeof item !== 'object' || item === null) continue;
    deepest = Math.max(deepest, depth);
    for (const child of Object.values(item)) stack.push([child, depth + 1]);
  }
  return deepest;
}

/**
 * The status the webhook documents for a body and credentials (src/events/webhook.ts): 413
 * over 1 MiB (checked first), 401 for a missing or wrong secret, 400 for a body that is not
 * JSON, nested deeper than MAX_DEPTH (no Event Grid delivery is) or not events (neither an
 * array nor an object, or an empty array), else 200 (each event
 * stored, dead-lettered, ignored or a replica). Never 500, and 503 only for a failure on this
 * side, which the in-memory queues never have for a message SQS would take.
 */
export function expectedWebhookStatus(
  body: string,
  auth: AuthVariant,
): { status: number; why: string; delivered?: number } {
  if (Buffer.byteLength(body, 'utf8') > MAX_BODY_BYTES) return { status: 413, why: 'over 1 MiB' };
  if (auth !== 'valid') return { status: 401, why: `unauthenticated (${auth})` };
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return { status: 400, why: 'not JSON' };
  }
  if (depthOf(value) > MAX_DEPTH) return { status: 400, why: 'nested too deep' };
  if (Array.isArray(value)) {
    return value.length === 0
      ? { status: 400, why: 'no events' }
      : { status: 200, why: 'events', delivered: value.length };
  }
  if (typeof value === 'object' && value !== null)
    return { status: 200, why: 'events', delivered: 1 };
  return { status: 400, why: 'not events' };
}

/** A rule for the plan and copy targets: `fuzz-bucket` <-> `fuzz-container` unless given. */
export function fuzzRuleConfig(bucket = 'fuzz-bucket', container = 'fuzz-container') {
  return {
    rules: [
      {
        name: 'fuzz',
        s3: { bucket },
        azure: { accountUrl: ACCOUNT_URL, container },
        deletes: 'mirror',
      },
    ],
  };
}

/** The plan step (planBatch), one record per batch, on the given or in-memory queues. */
export class PlanTarget {
  readonly memory = new MemorySqs();
  readonly #planned: Array<Parameters<Telemetry['planned']>[0]> = [];
  readonly dependencies: PlanDependencies;

  constructor(rules: ReplicationRule[], storesOf?: PlanDependencies['storesOf']) {
    this.dependencies = {
      sqs: this.memory.client,
      rules,
      eventsQueueUrl: 'memory://events',
      eventsDeadLetterQueueUrl: 'memory://events-dlq',
      tasksQueueUrl: 'memory://tasks',
      storesOf:
        storesOf ??
        (async () => {
          throw new Error('the plan step asked for stores');
        }),
      telemetry: recordingTelemetry(this.#planned),
    };
  }

  /** Plans `body` as one record, and judges what became of it. */
  async run(body: string, messageId: string): Promise<Verdict> {
    if (!deliverableBySqs(body)) return { answer: 'not deliverable by SQS', violations: [] };
    this.memory.clear();
    this.#planned.length = 0;
    let response: Awaited<ReturnType<typeof planBatch>>;
    try {
      response = await planBatch([sqsRecord(body, messageId)], this.dependencies);
    } catch (error) {
      return { answer: 'threw', violations: [`planBatch threw: ${errorText(error)}`] };
    }
    return judgePlan(
      body,
      response.batchItemFailures.length,
      this.memory.messages('memory://events-dlq'),
      this.memory.messages('memory://tasks'),
      this.memory.messages('memory://events'),
      this.#planned[0],
      this.memory.refused,
    );
  }
}

/** Judges one planned record from what reached each queue. */
export function judgePlan(
  body: string,
  failures: number,
  deadLetters: StoredMessage[],
  tasks: StoredMessage[],
  followUps: StoredMessage[],
  counts: Parameters<Telemetry['planned']>[0] | undefined,
  refused: readonly string[] = [],
): Verdict {
  const violations: string[] = [];
  if (failures > 0) {
    violations.push(
      `the record failed (retried, never dead-lettered with a reason)${refused.length > 0 ? `; SQS refused: ${refused.join('; ')}` : ''}`,
    );
  }
  if (followUps.length > 0) violations.push(`${followUps.length} follow-up messages sent`);
  if (deadLetters.length > 1) violations.push(`${deadLetters.length} dead letters for one record`);
  const [deadLetter] = deadLetters;
  if (deadLetter) {
    if (deadLetter.body !== body) violations.push('the dead letter does not keep the body');
    if (deadLetter.attributes.reason !== 'malformed-event' || !deadLetter.attributes.error) {
      violations.push(`dead letter without its reason: ${JSON.stringify(deadLetter.attributes)}`);
    }
    if (tasks.length > 0) violations.push(`dead-lettered, yet ${tasks.length} tasks sent`);
    return { answer: 'dead-lettered malformed-event', violations };
  }
  if (failures > 0) return { answer: 'failed (retried)', violations };
  for (const task of tasks) {
    try {
      parseTaskMessage(task.body);
    } catch (error) {
      violations.push(`sent a task the copy step cannot read: ${errorText(error)}`);
    }
  }
  if (tasks.length > 0) return { answer: 'task sent', violations };
  const why =
    counts === undefined
      ? 'no counts'
      : counts.ignored.length > 0
        ? 'ignored type'
        : counts.unrouted > 0
          ? 'unrouted'
          : counts.events > 0
            ? 'replica'
            : 'no events';
  return { answer: `skipped: ${why}`, violations };
}

/** The copy step (processTaskRecord) with stores whose writes are counted. */
export class CopyTarget {
  readonly memory = new MemorySqs();
  readonly writes: Array<{ call: string; key: unknown }> = [];
  readonly dependencies: TaskRecordDependencies;

  constructor(rules: ReplicationRule[], stores: { s3: ObjectStore; azure: ObjectStore }) {
    const s3 = writeCounting(stores.s3);
    const azure = writeCounting(stores.azure);
    this.writes = s3.writes;
    const azureWrites = azure.writes;
    // One list for both stores.
    azureWrites.push = (...items) => s3.writes.push(...items);
    this.dependencies = {
      sqs: this.memory.client,
      queueUrl: 'memory://tasks',
      deadLetterQueueUrl: 'memory://tasks-dlq',
      rules,
      storesFor: (_rule, task) =>
        task.sourceSide === 's3'
          ? { source: s3.store, destination: azure.store }
          : { source: azure.store, destination: s3.store },
    };
  }

  /** Runs `body` as a task record, and judges what became of it. */
  async run(body: string, messageId: string): Promise<Verdict> {
    if (!deliverableBySqs(body)) return { answer: 'not deliverable by SQS', violations: [] };
    this.memory.clear();
    const before = this.writes.length;
    const violations: string[] = [];
    let answer: string;
    try {
      const outcome = await processTaskRecord(sqsRecord(body, messageId), this.dependencies);
      if (outcome === 'dead-lettered') {
        const letters = this.memory.messages('memory://tasks-dlq');
        const reason = letters[0]?.attributes.reason;
        answer = `dead-lettered ${reason ?? '(none)'}`;
        if (letters.length !== 1 || !reason || !letters[0]?.attributes.error) {
          violations.push(
            `dead-lettered without one letter with its reason: ${JSON.stringify(letters.map((l) => l.attributes))}`,
          );
        }
      } else if (outcome === 'continued') {
        answer = 'continued';
        violations.push('a hostile task was continued');
      } else if (outcome.action === 'skipped') {
        answer = `skipped ${outcome.reason}`;
      } else {
        answer = outcome.action;
        violations.push(`a hostile task was ${outcome.action}`);
      }
    } catch (error) {
      answer = 'threw (retried)';
      violations.push(
        `processTaskRecord threw, so the task is retried: ${errorText(error)}${this.memory.refused.length > 0 ? `; SQS refused: ${this.memory.refused.join('; ')}` : ''}`,
      );
    }
    const tasks = this.memory.messages('memory://tasks');
    if (tasks.length > 0) violations.push(`${tasks.length} messages sent to the tasks queue`);
    const written = this.writes.slice(before);
    if (written.length > 0) {
      violations.push(
        `store writes: ${written.map((w) => `${w.call}(${JSON.stringify(w.key)?.slice(0, 80)})`).join(', ')}`,
      );
    }
    return { answer, violations };
  }
}

/** Tasks aimed at objects that exist: unrepresentable destination keys, `..` deletes. */
export function taskOnExisting(names: {
  source: string;
  victim: string;
}): fc.Arbitrary<HostileBody> {
  return fc.oneof(
    // A real source, a destination name Azure cannot hold as it is.
    hostileKey.filter(unrepresentableOnAzure).map((key) => ({
      kind: 'hostile-key' as const,
      body: JSON.stringify(copyTask(names.source, { destinationKey: key })),
    })),
    // A delete whose destination name resolves, through `.` / `..` segments, to another blob.
    fc
      .constantFrom('x/../', './', 'a/b/../../', 'x/%2e%2e/', 'x\\..\\', '../x/../')
      .map((prefix) => ({
        kind: 'hostile-key' as const,
        body: JSON.stringify(
          copyTask('fuzz-absent', { kind: 'deleted', destinationKey: `${prefix}${names.victim}` }),
        ),
      })),
    // An Azure source named through `..`: it must not be read as another blob.
    fc.constantFrom('x/../', './', 'a/b/../../').map((prefix) => ({
      kind: 'hostile-key' as const,
      body: JSON.stringify(
        copyTask(`${prefix}${names.victim}`, {
          sourceSide: 'azure',
          destinationKey: `fuzz-out/${prefix.replace(/\./g, 'dot')}${names.victim}`,
        }),
      ),
    })),
  );
}
