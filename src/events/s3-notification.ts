import {
  EventParseError,
  isOwnPrincipal,
  isRecord,
  type ObjectEvent,
  optionalSize,
  optionalString,
  type ParsedNotification,
  type ProvenanceOptions,
  quoteEtag,
  requireString,
} from './object-event.ts';

/**
 * Decodes a key from an S3 event notification: S3 form-encodes keys, so `+` is a space and
 * `%2B` a plus. Replace first, then percent-decode; the other order turns a literal `+` into a
 * space.
 */
export function decodeS3Key(encoded: string): string {
  try {
    return decodeURIComponent(encoded.replace(/\+/g, ' '));
  } catch (error) {
    throw new EventParseError(`object key "${encoded.slice(0, 100)}" is not valid URL encoding`, {
      cause: error,
    });
  }
}

/**
 * Who made an S3 change, from `userIdentity.principalId` (`AWS:AIDA…` for an IAM user,
 * `AWS:AROA…:<session>` for a role session; a Lambda function's session is the function's
 * name). Unknown unless the replicator's own principals are configured: without them every
 * writer would read as a user, the replicator included.
 */
function writerOf(record: Record<string, unknown>, options: ProvenanceOptions) {
  const own = options.ownS3Principals ?? [];
  const principal = isRecord(record.userIdentity)
    ? optionalString(record.userIdentity, 'principalId')
    : undefined;
  if (own.length === 0 || principal === undefined) return {};
  return {
    writtenBy: isOwnPrincipal(principal, own) ? ('replicator' as const) : ('user' as const),
  };
}

function parseRecord(
  record: unknown,
  index: number,
  options: ProvenanceOptions,
): ObjectEvent | string {
  const where = `S3 record ${index}`;
  if (!isRecord(record)) throw new EventParseError(`${where} is not an object`);
  const eventName = requireString(record, 'eventName', where);
  const s3 = record.s3;
  if (!isRecord(s3) || !isRecord(s3.bucket) || !isRecord(s3.object)) {
    throw new EventParseError(`${where}: "s3.bucket" or "s3.object" is missing`);
  }
  const kind = eventName.startsWith('ObjectCreated:')
    ? 'created'
    : eventName.startsWith('ObjectRemoved:') || eventName.startsWith('LifecycleExpiration:Delete')
      ? 'deleted'
      : undefined;
  // Restores, tagging, ACL and replication events change no bytes that this tool mirrors.
  if (!kind) return eventName;
  const etag = optionalString(s3.object, 'eTag');
  const size = optionalSize(s3.object, 'size');
  const sequencer = optionalString(s3.object, 'sequencer');
  const versionId = optionalString(s3.object, 'versionId');
  const requestId = isRecord(record.responseElements)
    ? optionalString(record.responseElements, 'x-amz-request-id')
    : undefined;
  return {
    id: `${requestId ?? 's3'}:${sequencer ?? index}`,
    side: 's3',
    container: requireString(s3.bucket, 'name', `${where} s3.bucket`),
    key: decodeS3Key(requireString(s3.object, 'key', `${where} s3.object`)),
    kind,
    eventTime: optionalString(record, 'eventTime') ?? new Date(0).toISOString(),
    ...(etag !== undefined && { etag: quoteEtag(etag) }),
    ...(size !== undefined && { size }),
    ...(sequencer !== undefined && { sequencer }),
    ...(versionId !== undefined && { versionId }),
    ...(eventName.endsWith('DeleteMarkerCreated') && { deleteMarker: true }),
    operation: eventName,
    ...writerOf(record, options),
  };
}

function parseEventBridge(event: Record<string, unknown>): ParsedNotification {
  const type = requireString(event, 'detail-type', 'EventBridge event');
  const detail = event.detail;
  if (!isRecord(detail) || !isRecord(detail.bucket) || !isRecord(detail.object)) {
    throw new EventParseError('EventBridge event: "detail.bucket" or "detail.object" is missing');
  }
  const kind =
    type === 'Object Created' ? 'created' : type === 'Object Deleted' ? 'deleted' : undefined;
  if (!kind) return { events: [], ignored: [type] };
  const etag = optionalString(detail.object, 'etag');
  const size = optionalSize(detail.object, 'size');
  const sequencer = optionalString(detail.object, 'sequencer');
  const versionId = optionalString(detail.object, 'version-id');
  const reason = optionalString(detail, 'reason');
  return {
    events: [
      {
        id: optionalString(event, 'id') ?? `eventbridge:${sequencer ?? ''}`,
        side: 's3',
        container: requireString(detail.bucket, 'name', 'EventBridge detail.bucket'),
        // EventBridge carries keys as they are, not URL-encoded. Its `requester` is an
        // account id or a service, not a principal: no provenance.
        // https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html
        key: requireString(detail.object, 'key', 'EventBridge detail.object'),
        kind,
        eventTime: optionalString(event, 'time') ?? new Date(0).toISOString(),
        ...(etag !== undefined && { etag: quoteEtag(etag) }),
        ...(size !== undefined && { size }),
        ...(sequencer !== undefined && { sequencer }),
        ...(versionId !== undefined && { versionId }),
        ...(optionalString(detail, 'deletion-type') === 'Delete Marker Created' && {
          deleteMarker: true,
        }),
        ...(reason !== undefined && { operation: reason }),
      },
    ],
    ignored: [],
  };
}

function parseValue(value: unknown, depth: number, options: ProvenanceOptions): ParsedNotification {
  if (!isRecord(value)) throw new EventParseError('the notification is not a JSON object');
  if (value.Event === 's3:TestEvent') return { events: [], ignored: ['s3:TestEvent'] };
  if (value.Type === 'Notification' && typeof value.Message === 'string' && depth === 0) {
    // Delivered through SNS: the S3 notification is the envelope's Message, as a string.
    return parseS3Notification(value.Message, options, depth + 1);
  }
  if (value.source === 'aws.s3' && 'detail-type' in value) return parseEventBridge(value);
  if (Array.isArray(value.Records)) {
    const events: ObjectEvent[] = [];
    const ignored: string[] = [];
    value.Records.forEach((record, index) => {
      const parsed = parseRecord(record, index, options);
      if (typeof parsed === 'string') ignored.push(parsed);
      else events.push(parsed);
    });
    return { events, ignored };
  }
  throw new EventParseError(
    'not an S3 notification (no "Records", no SNS envelope, no EventBridge "aws.s3" event)',
  );
}

/**
 * Parses an S3 event notification as it arrives in an SQS message body: straight from S3, in
 * an SNS envelope, or as an EventBridge event. Throws only `EventParseError`.
 */
export function parseS3Notification(
  body: string,
  options: ProvenanceOptions = {},
  depth = 0,
): ParsedNotification {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    throw new EventParseError('the notification is not valid JSON', { cause: error });
  }
  return parseValue(value, depth, options);
}
