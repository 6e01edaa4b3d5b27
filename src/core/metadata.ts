import { createHash } from 'node:crypto';
import { UnrepresentableError } from '../errors.ts';
import type { Side } from '../stores/object-store.ts';

/**
 * User metadata across the two stores, and the replica marker.
 *
 * S3 sends names as `x-amz-meta-<name>` headers and returns them lowercased. Azure needs C#
 * identifiers (`[A-Za-z_][A-Za-z0-9_]*`), compared without case but stored with it. A
 * *logical* map holds the names as the user wrote them on the origin side; `toNative` turns it
 * into the names one store keeps, `fromNative` turns them back.
 *
 * Names a store can carry as they are stay unchanged: on S3 `[a-z0-9_.-]+` (lowercase, since
 * S3 lowercases; other HTTP token characters are escaped too, as a few tools mishandle them),
 * on Azure C# identifiers. Every other name, and every name starting with `s3az` in any case,
 * is escaped as `s3azx_` + body, where `a-z` and `0-9` stay and every other character
 * (uppercase letters and `_` included) becomes `_` and two lowercase hex digits:
 * `my-key` -> `s3azx_my_2dkey`, `MyKey` -> `s3azx__4dy_4bey`, `s3az_origin` ->
 * `s3azx_s3az_5forigin`. The escaped form is lowercase `[a-z0-9_]`, so it is legal on both
 * stores and survives S3's lowercasing; `_` always starts a three-character escape, so it
 * decodes one way only. Names outside printable ASCII cannot be header names on either store
 * and are refused.
 *
 * The marker is a few lowercase names under `s3az_`, legal and identical on both stores. An
 * object that carries a complete marker was written by this tool, and its names are decoded;
 * an object without one was written by a user, and its names are taken literally, so a user's
 * own `s3az…` names are kept (and escaped on the way to the other side), never dropped.
 */
const ESCAPE_PREFIX = 's3azx_';
const ESCAPED = /^s3azx_((?:[a-z0-9]|_[0-9a-f]{2})+)$/;
const RESERVED = /^s3az/i;

/** Names of the replica marker entries (legal and identical on both stores). */
export const MARKER_NAMES = {
  origin: 's3az_origin',
  sourceEtag: 's3az_source_etag',
  sourceLastModified: 's3az_source_last_modified',
  sourceSequencer: 's3az_source_sequencer',
  rule: 's3az_rule',
  source: 's3az_source',
  size: 's3az_size',
  contentMd5: 's3az_content_md5',
  replicatedAt: 's3az_replicated_at',
} as const;

const MARKER_NAME_SET = new Set<string>(Object.values(MARKER_NAMES));

/**
 * The marker's request-level twin on Azure: every request the replicator sends to Azure
 * carries `x-ms-client-request-id: s3az-replicator-<uuid>`, which Event Grid reports as the
 * event's `data.clientRequestId`. An event with it announces a replica this tool wrote (or
 * deleted), so the webhook skips it (rule 2) without queueing it or reading the blob. A later
 * change by anyone else has an event of its own.
 */
export const OWN_CLIENT_REQUEST_ID_PREFIX = 's3az-replicator-';

export function isOwnClientRequestId(id: string | undefined): boolean {
  return id?.startsWith(OWN_CLIENT_REQUEST_ID_PREFIX) === true;
}

/** What every object the replicator writes says about where it came from. */
export interface ReplicaMarker {
  /** The side the source object is on. */
  origin: Side;
  /** The source version the replica was made from. */
  sourceEtag: string;
  /** ISO 8601. */
  sourceLastModified: string;
  sourceSequencer?: string;
  /** The replication rule that wrote it; absent for `s3az copy` and for markers before 0.2. */
  rule?: string;
  /** The source's bucket or container and key, as `sourceRef` writes them; absent before 0.2. */
  source?: string;
  /** Size in bytes of the content written. */
  size?: number;
  /** Base64 MD5 of the content written, when the replicator knew it. */
  contentMd5?: string;
  /**
   * ISO 8601: when the replicator wrote it. A copy of the object keeps it (with the rest of the
   * metadata), so it tells a replica written now from a user's copy of an older one.
   */
  replicatedAt?: string;
}

// A key is up to 1,024 bytes of UTF-8 and metadata values are printable ASCII, in at most
// 2 KB on S3: a reference longer than this is written as a digest instead.
const MAX_SOURCE_REF = 512;

/**
 * How a marker names its source object: `<container>/<key>` with every byte outside
 * unreserved ASCII percent-encoded (a metadata value carries printable ASCII only), or, when
 * that is longer than 512 characters, `sha256:` and the hex digest of `<container>/<key>`.
 * Compare references, never decode them.
 */
export function sourceRef(container: string, key: string): string {
  const encoded = `${encodeURIComponent(container)}/${encodeURIComponent(key).replace(/%2F/g, '/')}`;
  return encoded.length <= MAX_SOURCE_REF ? encoded : sourceDigest(container, key);
}

/** The short form of `sourceRef`: `sha256:` and the hex digest of `<container>/<key>`. */
export function sourceDigest(container: string, key: string): string {
  return `sha256:${createHash('sha256').update(`${container}/${key}`, 'utf8').digest('hex')}`;
}

// S3: user metadata is at most 2 KB, counted as the UTF-8 bytes of names (without
// `x-amz-meta-`) and values.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html
// Azure: names and values together at most 8 KB.
// https://learn.microsoft.com/rest/api/storageservices/setting-and-retrieving-properties-and-metadata-for-blob-resources
const METADATA_LIMIT: Record<Side, number> = { s3: 2048, azure: 8192 };

const STORE_NAME: Record<Side, string> = { s3: 'S3', azure: 'Azure' };

const CARRIES: Record<Side, RegExp> = {
  s3: /^[a-z0-9_.-]+$/,
  azure: /^[A-Za-z_][A-Za-z0-9_]*$/,
};

function carriesAsIs(side: Side, name: string): boolean {
  return CARRIES[side].test(name) && !RESERVED.test(name);
}

function escapeName(name: string): string {
  let body = '';
  for (const char of name) {
    if (/^[a-z0-9]$/.test(char)) {
      body += char;
      continue;
    }
    const code = char.codePointAt(0) ?? 0;
    // Header names are printable ASCII; anything else is no metadata name on either store.
    if (code < 0x21 || code > 0x7e) {
      throw new UnrepresentableError(
        `metadata name "${name}" has a character (U+${code.toString(16).toUpperCase().padStart(4, '0')}) that no store accepts in a name`,
      );
    }
    body += `_${code.toString(16).padStart(2, '0')}`;
  }
  return `${ESCAPE_PREFIX}${body}`;
}

/** The logical name of an escaped native name, or `undefined` when it is not one. */
function unescapeName(native: string): string | undefined {
  const body = ESCAPED.exec(native)?.[1];
  if (body === undefined) return undefined;
  return body.replace(/_([0-9a-f]{2})/g, (_match, hex: string) =>
    String.fromCharCode(Number.parseInt(hex, 16)),
  );
}

function checkValue(side: Side, name: string, value: string): void {
  // Metadata travels in HTTP headers: S3 returns non-ASCII values MIME-encoded (RFC 2047) and
  // Azure refuses them; both trim surrounding whitespace. Either way the value would change.
  const bad = /[^\x20-\x7e]/u.exec(value);
  if (bad) {
    const code = bad[0].codePointAt(0) ?? 0;
    throw new UnrepresentableError(
      `metadata "${name}" has a value ${STORE_NAME[side]} cannot carry unchanged: character U+${code.toString(16).toUpperCase().padStart(4, '0')} at position ${bad.index} (only printable ASCII and spaces)`,
    );
  }
  if (value !== value.trim()) {
    throw new UnrepresentableError(
      `metadata "${name}" has a value ${STORE_NAME[side]} cannot carry unchanged: leading or trailing spaces, which HTTP trims`,
    );
  }
}

/**
 * Translates logical names to the names `side` stores: unchanged where `side` can carry them,
 * escaped otherwise (see the module comment). Values are checked, never changed.
 *
 * @throws UnrepresentableError naming the key when a name or value cannot be carried
 *   unchanged, or when two names would be the same name on `side`.
 */
export function toNative(side: Side, logical: Record<string, string>): Record<string, string> {
  const native: Array<[string, string]> = [];
  const seen = new Map<string, string>();
  for (const [name, value] of Object.entries(logical)) {
    if (name === '') throw new UnrepresentableError('a metadata name cannot be empty');
    checkValue(side, name, value);
    const nativeName = carriesAsIs(side, name) ? name : escapeName(name);
    // Both stores compare names without case: two names that differ only in case collide.
    const folded = nativeName.toLowerCase();
    const other = seen.get(folded);
    if (other !== undefined) {
      throw new UnrepresentableError(
        `metadata names "${other}" and "${name}" would be the same name on ${STORE_NAME[side]}`,
      );
    }
    seen.set(folded, name);
    native.push([nativeName, value]);
  }
  // fromEntries defines own properties, so a name such as `__proto__` is kept, not swallowed.
  return Object.fromEntries(native);
}

/**
 * Translates names that this tool wrote on `side` back to logical names: the inverse of
 * `toNative`, so `fromNative(side, toNative(side, logical))` is `logical`. Marker entries are
 * not user metadata and are left out; names that are not escapes are taken as they are. For
 * an object of unknown origin use `userMetadataOf`.
 *
 * @throws UnrepresentableError when two native names read as the same logical name.
 */
export function fromNative(side: Side, native: Record<string, string>): Record<string, string> {
  const logical = new Map<string, string>();
  for (const [name, value] of Object.entries(native)) {
    if (MARKER_NAME_SET.has(name.toLowerCase())) continue;
    const original = unescapeName(name) ?? name;
    if (logical.has(original)) {
      throw new UnrepresentableError(
        `two metadata names on ${STORE_NAME[side]} both read as "${original}" (one is "${name}")`,
      );
    }
    logical.set(original, value);
  }
  return Object.fromEntries(logical);
}

/**
 * The user's metadata (logical names) of a stored object, without the replica marker. An
 * object with a complete marker was written by this tool: its names are decoded
 * (`fromNative`). Any other object was written by a user, who never wrote our escapes: its
 * names are taken literally, `s3az…` names included.
 */
export function userMetadataOf(side: Side, native: Record<string, string>): Record<string, string> {
  if (readReplicaMarker(native) !== undefined) return fromNative(side, native);
  return Object.fromEntries(Object.entries(native));
}

function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** What metadata counts against a store's limit: the UTF-8 bytes of its names and values. */
function metadataBytes(native: Record<string, string>): number {
  let total = 0;
  for (const [name, value] of Object.entries(native)) total += utf8Bytes(name) + utf8Bytes(value);
  return total;
}

/**
 * The metadata to write on `side`: the user's logical names translated (`toNative`), plus the
 * replica marker, checked against the store's size limit (S3 2,048 bytes, Azure 8,192 bytes
 * of names and values).
 *
 * @throws UnrepresentableError naming the key and the reason when a name or value cannot be
 *   written unchanged, or naming the limit and the largest entry when the total is over it.
 */
export function buildNativeMetadata(
  side: Side,
  logical: Record<string, string>,
  marker: ReplicaMarker,
): Record<string, string> {
  const user = toNative(side, logical);
  // What did fit before markers named their source must fit still: near the limit the marker
  // names its source by digest and drops its optional parts, and at last takes the form of
  // earlier versions (taken to name the key it sits at).
  const { origin, sourceEtag, sourceLastModified } = marker;
  const tiers: ReplicaMarker[] = [
    marker,
    {
      origin,
      sourceEtag,
      sourceLastModified,
      ...(marker.rule !== undefined && { rule: marker.rule }),
      ...(marker.source !== undefined && { source: shortSourceRef(marker.source) }),
      ...(marker.size !== undefined && { size: marker.size }),
      ...(marker.replicatedAt !== undefined && { replicatedAt: marker.replicatedAt }),
    },
    { origin, sourceEtag, sourceLastModified },
  ];
  let total = 0;
  let largest = { name: '', bytes: 0 };
  for (const tier of tiers) {
    const native = { ...user, ...markerEntries(tier) };
    for (const name of Object.values(MARKER_NAMES)) {
      const value = native[name];
      if (value !== undefined) checkValue(side, name, value);
    }
    total = metadataBytes(native);
    largest = { name: '', bytes: 0 };
    for (const [name, value] of Object.entries(native)) {
      const bytes = utf8Bytes(name) + utf8Bytes(value);
      if (bytes > largest.bytes) largest = { name, bytes };
    }
    if (total <= METADATA_LIMIT[side]) return native;
  }
  throw new UnrepresentableError(
    `metadata on ${STORE_NAME[side]} would take ${total} bytes (names and values, with the replica marker), over its limit of ${METADATA_LIMIT[side]}; the largest entry is "${largest.name}" (${largest.bytes} bytes)`,
  );
}

function markerEntries(marker: ReplicaMarker): Record<string, string> {
  const entries: Record<string, string> = {
    [MARKER_NAMES.origin]: marker.origin,
    [MARKER_NAMES.sourceEtag]: marker.sourceEtag,
    [MARKER_NAMES.sourceLastModified]: marker.sourceLastModified,
  };
  if (marker.sourceSequencer !== undefined) {
    entries[MARKER_NAMES.sourceSequencer] = marker.sourceSequencer;
  }
  if (marker.rule !== undefined) entries[MARKER_NAMES.rule] = marker.rule;
  if (marker.source !== undefined) entries[MARKER_NAMES.source] = marker.source;
  if (marker.size !== undefined) entries[MARKER_NAMES.size] = String(marker.size);
  if (marker.contentMd5 !== undefined) entries[MARKER_NAMES.contentMd5] = marker.contentMd5;
  if (marker.replicatedAt !== undefined) entries[MARKER_NAMES.replicatedAt] = marker.replicatedAt;
  return entries;
}

/** A `sourceRef` in its digest form. */
function shortSourceRef(ref: string): string {
  if (ref.startsWith('sha256:')) return ref;
  const slash = ref.indexOf('/');
  try {
    return sourceDigest(
      decodeURIComponent(ref.slice(0, slash)),
      decodeURIComponent(ref.slice(slash + 1)),
    );
  } catch {
    return ref;
  }
}

/**
 * The metadata to commit a replica with, stamped at the moment of the write: `replicatedAt`
 * is now (the replica's Last-Modified is this moment on both stores, S3 multipart aside, whose
 * metadata is fixed when the upload starts, as is its date), and `contentMd5` is the MD5 of
 * the bytes when the caller has them, if it fits the store's limit.
 */
export function stampMarker(
  side: Side,
  native: Record<string, string>,
  stamp: { replicatedAt: string; contentMd5?: string },
): Record<string, string> {
  const stamped: Record<string, string> = { ...native };
  // A marker in the earlier form (near the size limit) stays in that form.
  if (stamped[MARKER_NAMES.replicatedAt] === undefined) return stamped;
  stamped[MARKER_NAMES.replicatedAt] = stamp.replicatedAt;
  if (stamp.contentMd5 === undefined) return stamped;
  // The MD5 of the bytes written beats one the source reported (Put Block List keeps any).
  const withMd5 = { ...stamped, [MARKER_NAMES.contentMd5]: stamp.contentMd5 };
  return metadataBytes(withMd5) <= METADATA_LIMIT[side] ? withMd5 : stamped;
}

/**
 * The replica marker in an object's native metadata, or `undefined` unless it is complete
 * (a known origin, a source eTag and a source last-modified). Names are matched without case.
 */
export function readReplicaMarker(native: Record<string, string>): ReplicaMarker | undefined {
  const lower = new Map(Object.entries(native).map(([name, value]) => [name.toLowerCase(), value]));
  const origin = lower.get(MARKER_NAMES.origin);
  const sourceEtag = lower.get(MARKER_NAMES.sourceEtag);
  const sourceLastModified = lower.get(MARKER_NAMES.sourceLastModified);
  if ((origin !== 's3' && origin !== 'azure') || !sourceEtag || !sourceLastModified) {
    return undefined;
  }
  const sourceSequencer = lower.get(MARKER_NAMES.sourceSequencer);
  const rule = lower.get(MARKER_NAMES.rule);
  const source = lower.get(MARKER_NAMES.source);
  const sizeText = lower.get(MARKER_NAMES.size);
  const size = sizeText !== undefined && /^\d{1,16}$/.test(sizeText) ? Number(sizeText) : undefined;
  const contentMd5 = lower.get(MARKER_NAMES.contentMd5);
  const replicatedAt = lower.get(MARKER_NAMES.replicatedAt);
  return {
    origin,
    sourceEtag,
    sourceLastModified,
    ...(sourceSequencer !== undefined && { sourceSequencer }),
    ...(rule !== undefined && { rule }),
    ...(source !== undefined && { source }),
    ...(size !== undefined && { size }),
    ...(contentMd5 !== undefined && { contentMd5 }),
    ...(replicatedAt !== undefined && { replicatedAt }),
  };
}
