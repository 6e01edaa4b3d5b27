import { UnrepresentableError } from '../errors.ts';
import type { Side } from '../stores/object-store.ts';

// S3: 1,024 UTF-8 bytes. Azure: 1,024 characters.
const MAX_KEY_LENGTH = 1024;

/** The key for a message: long keys cut to their first 60 characters (never mid-character). */
function shown(key: string): string {
  const chars = Array.from(key);
  return chars.length > 80 ? `${chars.slice(0, 60).join('')}…(${chars.length} chars)` : key;
}

/**
 * Whether `key` can name an object on `side` without another one being meant: throws
 * UnrepresentableError for a lone surrogate (no UTF-8 form, and the SDKs cannot encode it),
 * and on Azure for a "." or ".." path segment, which the SDK resolves in the URL (so
 * `a/../b` would read or delete `b`). Checked before any request of a task.
 */
export function checkAddressable(side: Side, key: string): void {
  checkWellFormed(key);
  if (side === 'azure') checkDotSegments(key);
}

function checkWellFormed(key: string): void {
  if (key.length === 0) throw new UnrepresentableError('an object key cannot be empty');
  // With the u flag this matches only unpaired surrogates, which UTF-8 cannot encode.
  if (/[\uD800-\uDFFF]/u.test(key)) {
    throw new UnrepresentableError(
      `key "${shown(key)}" is not well-formed Unicode (a lone surrogate), so it has no UTF-8 form`,
    );
  }
}

function checkDotSegments(key: string): void {
  if (key.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw new UnrepresentableError(
      `key "${shown(key)}" has a "." or ".." path segment, which Azure resolves away`,
    );
  }
}

/**
 * Throws `UnrepresentableError`, naming the key (cut short when long) and the reason, when
 * `side` cannot store `key` under exactly that name.
 *
 * - S3: 1 to 1,024 bytes of UTF-8.
 *   https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html
 * - Azure: 1 to 1,024 characters; Azure trims names ending in `.` or `/`, turns `\` into `/`,
 *   and resolves `.` and `..` path segments in the URL, so such keys would be stored under
 *   another name.
 *   https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
 * - Both: the key must be well-formed Unicode (a lone surrogate has no UTF-8 form).
 *
 * Spaces, `+`, `%`, other Unicode and deep `/` paths are fine on both.
 */
export function checkKeyFor(side: Side, key: string): void {
  checkWellFormed(key);
  if (side === 's3') {
    const bytes = Buffer.byteLength(key, 'utf8');
    if (bytes > MAX_KEY_LENGTH) {
      throw new UnrepresentableError(
        `key "${shown(key)}" is ${bytes} UTF-8 bytes; S3 keys are at most ${MAX_KEY_LENGTH}`,
      );
    }
    return;
  }
  // Counted in UTF-16 code units, as the service (.NET) counts string length; a character
  // outside the BMP counts twice, which can only refuse a borderline key, never accept one.
  if (key.length > MAX_KEY_LENGTH) {
    throw new UnrepresentableError(
      `key "${shown(key)}" is ${key.length} characters; Azure blob names are at most ${MAX_KEY_LENGTH}`,
    );
  }
  if (key.endsWith('.') || key.endsWith('/')) {
    throw new UnrepresentableError(
      `key "${shown(key)}" ends in "${key.at(-1)}", which Azure trims from blob names`,
    );
  }
  if (key.includes('\\')) {
    throw new UnrepresentableError(
      `key "${shown(key)}" contains "\\", which Azure turns into "/" in blob names`,
    );
  }
  checkDotSegments(key);
}

/**
 * Joins a destination prefix and a relative key, adding the `/` between them when the prefix
 * has none: `joinKey('in/', 'a/b')` and `joinKey('in', 'a/b')` are `in/a/b`; an empty prefix
 * leaves the key as it is.
 */
export function joinKey(prefix: string, relative: string): string {
  if (prefix === '') return relative;
  return prefix.endsWith('/') ? `${prefix}${relative}` : `${prefix}/${relative}`;
}

/**
 * The part of `key` after `prefix`, so that `joinKey(prefix, relativeKey(prefix, key))` is
 * `key` for a prefix ending in `/`. Throws `RangeError` when `key` does not start with `prefix`
 * (a caller's bug: keys come from a listing of that prefix).
 */
export function relativeKey(prefix: string, key: string): string {
  if (!key.startsWith(prefix)) throw new RangeError(`"${key}" is not under "${prefix}"`);
  return key.slice(prefix.length);
}
