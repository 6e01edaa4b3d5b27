import { PermanentError } from '../errors.ts';
import type { Side } from '../stores/object-store.ts';

/** What happened to an object, normalised across S3 and Event Grid. */
export type ObjectEventKind =
  | 'created'
  | 'deleted'
  | 'renamed'
  | 'directory-renamed'
  | 'directory-deleted';

/** One change to one object (or, for directory events, one ADLS Gen2 directory). */
export interface ObjectEvent {
  /** The notification's own id, for logs and correlation. */
  id: string;
  side: Side;
  /** Azure storage account name (from the blob URL); absent for S3. */
  account?: string;
  /** Bucket or container. */
  container: string;
  /** The object key; for directory events the directory path; for renames the new name. */
  key: string;
  kind: ObjectEventKind;
  /** ISO 8601. */
  eventTime: string;
  /** Quoted, as the stores return it in HEAD. */
  etag?: string;
  size?: number;
  /** Per-key ordering token (S3 and Azure both give one); compare with `compareSequencers`. */
  sequencer?: string;
  versionId?: string;
  /** S3: the delete created a delete marker (versioned bucket). */
  deleteMarker?: boolean;
  /** Renames: the old name. */
  sourceKey?: string;
  /** The service's own name of the operation (`ObjectCreated:Put`, `PutBlockList`, …). */
  operation?: string;
  /**
   * Who made the change, where the event tells: `replicator` for this tool's own writes and
   * deletes, `user` for anyone else. Absent when the event form does not say, or (S3) when
   * the replicator's own principals are not configured.
   */
  writtenBy?: 'replicator' | 'user';
}

/** How to read provenance from events: the principals this tool writes to S3 as. */
export interface ProvenanceOptions {
  /**
   * `userIdentity.principalId` values of the replicator's own S3 writes. An entry ending in
   * `:` matches every principal it starts (`AWS:AROA…:`, any session of one role); an entry
   * starting with `*:` matches every principal it ends (`*:s3-azure-replicator`, one
   * session name in any role); any other entry matches itself.
   */
  ownS3Principals?: readonly string[];
}

/** Whether an S3 event's principal is one of the replicator's own. */
export function isOwnPrincipal(principal: string, own: readonly string[]): boolean {
  return own.some((entry) =>
    entry.startsWith('*:')
      ? principal.endsWith(entry.slice(1))
      : entry.endsWith(':')
        ? principal.startsWith(entry)
        : principal === entry,
  );
}

/** What a notification body held: the events, and what was recognised but is not replicated. */
export interface ParsedNotification {
  events: ObjectEvent[];
  /** Types (or S3 event names) that were understood and deliberately skipped, one per record. */
  ignored: string[];
}

/** A notification that cannot be understood. Permanent: the same bytes never parse. */
export class EventParseError extends PermanentError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'EventParseError';
  }
}

/** Quotes an eTag the way HEAD returns it (`"abc"`), whatever form the event used. */
export function quoteEtag(etag: string): string {
  return etag.startsWith('"') ? etag : `"${etag}"`;
}

/**
 * Orders two per-key sequencers as the services define them: hexadecimal strings compared
 * lexicographically after the shorter is padded with zeros on the right (S3: "first right pad
 * the shorter value with zeros"; guides before mid-2021 said left). Azure's sequencers have
 * one length and compare as strings. Negative when `a` is older.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html
 */
export function compareSequencers(a: string, b: string): number {
  const length = Math.max(a.length, b.length);
  const left = a.toUpperCase().padEnd(length, '0');
  const right = b.toUpperCase().padEnd(length, '0');
  return left < right ? -1 : left > right ? 1 : 0;
}

/** `typeof value === 'object'` for plain records, with a useful type. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A required string field, or a parse error naming it. */
export function requireString(
  record: Record<string, unknown>,
  name: string,
  where: string,
): string {
  const value = record[name];
  if (typeof value !== 'string' || value === '') {
    throw new EventParseError(`${where}: "${name}" is missing or not a string`);
  }
  return value;
}

/** An optional string field; anything but a string reads as absent. */
export function optionalString(record: Record<string, unknown>, name: string): string | undefined {
  const value = record[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** An optional non-negative integer field. */
export function optionalSize(record: Record<string, unknown>, name: string): number | undefined {
  const value = record[name];
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}
