import { UnrepresentableError } from '../errors.ts';
import type { Side } from '../stores/object-store.ts';

/**
 * User metadata across the two stores.
 *
 * S3 sends names as `x-amz-meta-<name>` headers and returns them lowercased; Azure needs C#
 * identifiers (`[A-Za-z_][A-Za-z0-9_]*`), case-insensitive but case-preserving. A *logical*
 * map holds names as the user wrote them on the origin side. Names the destination can carry
 * as they are stay unchanged; others are escaped as `s3azx_` + body, where `a-z` and `0-9`
 * stay and every other character (uppercase letters and `_` included) becomes `_` and two hex
 * digits: `my-key` -> `s3azx_my_2dkey`, `MyKey` -> `s3azx__4dy_4bey`. The escaped form is
 * legal, and survives lowercasing, on both stores, so round trips restore the exact names.
 * Other names starting with `s3az` are escaped too. Reserved, and read as this scheme's own: the
 * four marker names (`s3az_origin`, …) and names starting with `s3azx_`.
 */
const ESCAPE_PREFIX = 's3azx_';
const RESERVED = /^s3az/i;

/** Names of the replica marker entries (legal and identical on both stores). */
export const MARKER_NAMES = {
  origin: 's3az_origin',
  sourceEtag: 's3az_source_etag',
  sourceLastModified: 's3az_source_last_modified',
  sourceSequencer: 's3az_source_sequencer',
} as const;

/** What every object the replicator writes says about where it came from (DESIGN rule 1). */
export interface ReplicaMarker {
  origin: Side;
  sourceEtag: string;
  /** ISO 8601. */
  sourceLastModified: string;
  sourceSequencer?: string;
}

// S3: 2 KB of user metadata, names + values in UTF-8 bytes.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html
// Azure: 8 KB of metadata, names + values.
// https://learn.microsoft.com/rest/api/storageservices/setting-and-retrieving-properties-and-metadata-for-blob-resources
const METADATA_LIMIT: Record<Side, number> = { s3: 2048, azure: 8192 };

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
    // Header names are ASCII tokens; anything else cannot be a metadata name on either store.
    if (code < 0x21 || code > 0x7e) {
      throw new UnrepresentableError(`metadata name "${name}" has a character no store accepts`);
    }
    body += `_${code.toString(16).padStart(2, '0')}`;
  }
  return `${ESCAPE_PREFIX}${body}`;
}

function unescapeName(native: string): string | undefined {
  const body = native.slice(ESCAPE_PREFIX.length).toLowerCase();
  if (!/^(?:[a-z0-9]|_[0-9a-f]{2})*$/.test(body)) return undefined;
  return body.replace(/_([0-9a-f]{2})/g, (_match, hex: string) =>
    String.fromCharCode(Number.parseInt(hex, 16)),
  );
}

function checkValue(side: Side, name: string, value: string): void {
  // Metadata travels in HTTP headers: printable ASCII, no surrounding whitespace (it is trimmed).
  if (!/^[\x20-\x7e]*$/.test(value) || value !== value.trim()) {
    throw new UnrepresentableError(
      `metadata "${name}" has a value ${side === 's3' ? 'S3' : 'Azure'} cannot carry unchanged (only printable ASCII without leading or trailing spaces)`,
    );
  }
}

/** Translates logical names to the names `side` stores. */
export function toNative(side: Side, logical: Record<string, string>): Record<string, string> {
  const native: Record<string, string> = {};
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
        `metadata names "${other}" and "${name}" would be the same name on ${side === 's3' ? 'S3' : 'Azure'}`,
      );
    }
    seen.set(folded, name);
    native[nativeName] = value;
  }
  return native;
}

/** Translates the names `side` returned back to logical names. Marker entries are dropped. */
export function fromNative(side: Side, native: Record<string, string>): Record<string, string> {
  return userMetadataOf(side, native);
}

const MARKER_NAME_SET = new Set<string>(Object.values(MARKER_NAMES));

/**
 * The user's metadata (logical names) of an object, without the replica marker. The four
 * marker names are reserved: an entry with one of them is always read as marker.
 */
export function userMetadataOf(
  _side: Side,
  native: Record<string, string>,
): Record<string, string> {
  const logical: Record<string, string> = {};
  for (const [name, value] of Object.entries(native)) {
    if (MARKER_NAME_SET.has(name.toLowerCase())) continue;
    if (name.toLowerCase().startsWith(ESCAPE_PREFIX)) {
      const original = unescapeName(name);
      if (original !== undefined) {
        logical[original] = value;
        continue;
      }
    }
    logical[name] = value;
  }
  return logical;
}

function sizeOf(metadata: Record<string, string>): number {
  let total = 0;
  for (const [name, value] of Object.entries(metadata)) {
    total += Buffer.byteLength(name, 'utf8') + Buffer.byteLength(value, 'utf8');
  }
  return total;
}

/**
 * The metadata to write on `side`: the user's names translated, plus the replica marker.
 * Throws `UnrepresentableError` when it cannot be written unchanged (names, values, size).
 */
export function buildNativeMetadata(
  side: Side,
  logical: Record<string, string>,
  marker: ReplicaMarker,
): Record<string, string> {
  const native = toNative(side, logical);
  native[MARKER_NAMES.origin] = marker.origin;
  native[MARKER_NAMES.sourceEtag] = marker.sourceEtag;
  native[MARKER_NAMES.sourceLastModified] = marker.sourceLastModified;
  if (marker.sourceSequencer !== undefined) {
    native[MARKER_NAMES.sourceSequencer] = marker.sourceSequencer;
  }
  for (const [name, value] of Object.entries(native)) checkValue(side, name, value);
  const size = sizeOf(native);
  if (size > METADATA_LIMIT[side]) {
    throw new UnrepresentableError(
      `user metadata needs ${size} bytes on ${side === 's3' ? 'S3' : 'Azure'} (with the replica marker), over its limit of ${METADATA_LIMIT[side]}`,
    );
  }
  return native;
}

/** The replica marker in an object's native metadata, if it has a complete one. */
export function readReplicaMarker(native: Record<string, string>): ReplicaMarker | undefined {
  const lower = new Map(Object.entries(native).map(([name, value]) => [name.toLowerCase(), value]));
  const origin = lower.get(MARKER_NAMES.origin);
  const sourceEtag = lower.get(MARKER_NAMES.sourceEtag);
  const sourceLastModified = lower.get(MARKER_NAMES.sourceLastModified);
  if ((origin !== 's3' && origin !== 'azure') || !sourceEtag || !sourceLastModified) {
    return undefined;
  }
  const sourceSequencer = lower.get(MARKER_NAMES.sourceSequencer);
  return {
    origin,
    sourceEtag,
    sourceLastModified,
    ...(sourceSequencer !== undefined && { sourceSequencer }),
  };
}
