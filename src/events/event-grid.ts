import { isOwnClientRequestId } from '../core/metadata.ts';
import {
  EventParseError,
  isRecord,
  type ObjectEvent,
  type ObjectEventKind,
  optionalSize,
  optionalString,
  type ParsedNotification,
  quoteEtag,
  requireString,
} from './object-event.ts';

/** The Event Grid subscription handshake, when a delivery is one. */
export interface ValidationRequest {
  validationCode: string;
  validationUrl?: string;
}

export interface ParsedEventGridDelivery extends ParsedNotification {
  validation?: ValidationRequest;
  /** The delivery's own item for each of `events`, in the same order (what the queue stores). */
  items: unknown[];
  /**
   * Events of the replicator's own writes and deletes (`data.clientRequestId` starts with
   * `s3az-replicator-`): replicas announcing themselves, skipped without a task (rule 2).
   */
  replicas: ObjectEvent[];
}

const VALIDATION_TYPE = 'Microsoft.EventGrid.SubscriptionValidationEvent';

const KINDS: Record<string, ObjectEventKind> = {
  'Microsoft.Storage.BlobCreated': 'created',
  'Microsoft.Storage.BlobDeleted': 'deleted',
  'Microsoft.Storage.BlobRenamed': 'renamed',
  'Microsoft.Storage.DirectoryRenamed': 'directory-renamed',
  'Microsoft.Storage.DirectoryDeleted': 'directory-deleted',
};

// On ADLS Gen2 a file is created empty (CreateFile) and its data arrives with FlushWithClose;
// an SFTP upload likewise sends SftpCreate for the empty blob and SftpCommit for its data.
// Only the latter mean committed content.
// https://learn.microsoft.com/azure/event-grid/event-schema-blob-storage
const UNCOMMITTED_APIS = new Set(['CreateFile', 'SftpCreate']);

/** Where a blob lives, from its URL. */
export interface BlobLocation {
  account: string;
  container: string;
  key: string;
}

/**
 * Parses a blob (or directory) URL of a real account (`https://<account>.blob.core.windows.net`
 * or `.dfs.core.windows.net`, any cloud's suffix) or of an emulator
 * (`http://127.0.0.1:10000/<account>/...`). The key is percent-decoded.
 */
export function parseBlobUrl(text: string): BlobLocation {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new EventParseError(`"${text.slice(0, 200)}" is not a URL`);
  }
  const segments = url.pathname.split('/').slice(1);
  const emulator =
    url.hostname === 'localhost' || /^[\d.]+$/.test(url.hostname) || url.hostname.startsWith('[');
  const account = emulator ? segments.shift() : url.hostname.split('.')[0];
  const container = segments.shift();
  if (!account || !container) {
    throw new EventParseError(`"${text.slice(0, 200)}" names no storage account and container`);
  }
  let key: string;
  try {
    key = decodeURIComponent(segments.join('/'));
  } catch (error) {
    throw new EventParseError(
      `"${text.slice(0, 200)}" has a path that is not valid percent-encoding`,
      {
        cause: error,
      },
    );
  }
  return { account, container, key };
}

interface Envelope {
  id: string;
  type: string;
  time: string;
  data: Record<string, unknown>;
}

/** Reads either schema's envelope: Event Grid (`eventType`) or CloudEvents 1.0 (`type`). */
function envelopeOf(value: unknown, index: number): Envelope {
  const where = `event ${index}`;
  if (!isRecord(value)) throw new EventParseError(`${where} is not an object`);
  const cloudEvent = value.specversion !== undefined;
  if (cloudEvent && value.specversion !== '1.0') {
    throw new EventParseError(
      `${where}: CloudEvents specversion ${String(value.specversion)} is not 1.0`,
    );
  }
  const type = requireString(value, cloudEvent ? 'type' : 'eventType', where);
  const data = value.data;
  if (!isRecord(data)) throw new EventParseError(`${where} (${type}): "data" is missing`);
  return {
    id: requireString(value, 'id', where),
    type,
    time: optionalString(value, cloudEvent ? 'time' : 'eventTime') ?? new Date(0).toISOString(),
    data,
  };
}

function toObjectEvent(envelope: Envelope, kind: ObjectEventKind): ObjectEvent {
  const { data } = envelope;
  const where = `event ${envelope.id} (${envelope.type})`;
  const renamed = kind === 'renamed' || kind === 'directory-renamed';
  const target = parseBlobUrl(requireString(data, renamed ? 'destinationUrl' : 'url', where));
  const source = renamed ? parseBlobUrl(requireString(data, 'sourceUrl', where)) : undefined;
  const etag = optionalString(data, 'eTag');
  const size = optionalSize(data, 'contentLength');
  const sequencer = optionalString(data, 'sequencer');
  const api = optionalString(data, 'api');
  return {
    id: envelope.id,
    side: 'azure',
    account: target.account,
    container: target.container,
    key: target.key,
    kind,
    eventTime: envelope.time,
    ...(etag !== undefined && { etag: quoteEtag(etag) }),
    ...(size !== undefined && { size }),
    ...(sequencer !== undefined && { sequencer }),
    ...(source && { sourceKey: source.key }),
    ...(api !== undefined && { operation: api }),
  };
}

/** An event of a delivery that does not parse, with the reason. */
export interface MalformedEvent {
  /** The delivery's own item, as it came. */
  item: unknown;
  error: EventParseError;
}

/** A delivery parsed event by event: what `parseEventGridDelivery` reads, and what it could not. */
export interface ParsedEventGridEvents extends ParsedEventGridDelivery {
  /** The events that do not parse, in delivery order. */
  malformed: MalformedEvent[];
}

/**
 * Reads one item of a delivery into `parsed`. Throws only `EventParseError`, and only before
 * it writes anything into `parsed`.
 */
function readItem(item: unknown, index: number, parsed: ParsedEventGridDelivery): void {
  const envelope = envelopeOf(item, index);
  if (envelope.type === VALIDATION_TYPE) {
    const validationUrl = optionalString(envelope.data, 'validationUrl');
    parsed.validation = {
      validationCode: requireString(envelope.data, 'validationCode', `event ${index}`),
      ...(validationUrl !== undefined && { validationUrl }),
    };
    return;
  }
  const kind = KINDS[envelope.type];
  const api = optionalString(envelope.data, 'api');
  if (!kind || (kind === 'created' && api !== undefined && UNCOMMITTED_APIS.has(api))) {
    parsed.ignored.push(api && kind ? `${envelope.type}:${api}` : envelope.type);
    return;
  }
  const event = toObjectEvent(envelope, kind);
  // Event Grid reports the writer's x-ms-client-request-id. BlobDeleted and SFTP events
  // carry none: their writer is unknown, and the replica marker decides.
  // https://learn.microsoft.com/azure/event-grid/event-schema-blob-storage
  const clientRequestId = optionalString(envelope.data, 'clientRequestId');
  if (isOwnClientRequestId(clientRequestId)) {
    parsed.replicas.push({ ...event, writtenBy: 'replicator' });
    return;
  }
  parsed.events.push(clientRequestId === undefined ? event : { ...event, writtenBy: 'user' });
  parsed.items.push(item);
}

const emptyDelivery = (): ParsedEventGridDelivery => ({
  events: [],
  items: [],
  replicas: [],
  ignored: [],
});

/**
 * Parses an Event Grid delivery body: an array of events in the Event Grid schema, or
 * CloudEvents 1.0 (one event, or a batch array). Blob events become `ObjectEvent`s; the
 * subscription handshake is returned as `validation`; other types are listed in `ignored`; the
 * replicator's own writes are set apart as `replicas`.
 * Throws only `EventParseError`, at the first event that does not parse.
 */
export function parseEventGridDelivery(body: unknown): ParsedEventGridDelivery {
  const delivered = Array.isArray(body) ? body : [body];
  if (delivered.length === 0) throw new EventParseError('the delivery holds no events');
  const parsed = emptyDelivery();
  delivered.forEach((item, index) => {
    readItem(item, index, parsed);
  });
  return parsed;
}

/**
 * Parses a delivery as `parseEventGridDelivery` does, but event by event: an event that does
 * not parse is set apart in `malformed` with its error, and the rest are read. Throws
 * (`EventParseError`) only when the body is not events at all: neither an array nor an object,
 * or an empty array.
 */
export function parseEachEventGridEvent(body: unknown): ParsedEventGridEvents {
  if (!Array.isArray(body) && !isRecord(body)) {
    throw new EventParseError('the delivery is not an array of events or an event');
  }
  const delivered = Array.isArray(body) ? body : [body];
  if (delivered.length === 0) throw new EventParseError('the delivery holds no events');
  const parsed: ParsedEventGridEvents = { ...emptyDelivery(), malformed: [] };
  delivered.forEach((item, index) => {
    // readItem throws before it writes anything, so a bad event leaves nothing behind.
    try {
      readItem(item, index, parsed);
    } catch (error) {
      if (!(error instanceof EventParseError)) throw error;
      parsed.malformed.push({ item, error });
    }
  });
  return parsed;
}
