import { UnrepresentableError } from '../errors.ts';
import type { Side } from '../stores/object-store.ts';

const MAX_KEY_LENGTH = 1024;

function shown(key: string): string {
  return key.length > 80 ? `${key.slice(0, 60)}…(${key.length} chars)` : key;
}

/**
 * Throws `UnrepresentableError` when `side` cannot store `key` under exactly that name.
 * S3: 1 to 1,024 UTF-8 bytes. Azure: 1 to 1,024 characters, and Azure trims names ending in
 * `.` or `/`, folds `\` into `/`, and resolves `.` and `..` segments in the URL, so those would
 * be written under another name.
 * https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
 */
export function checkKeyFor(side: Side, key: string): void {
  if (key.length === 0) throw new UnrepresentableError('an object key cannot be empty');
  if (side === 's3') {
    const bytes = Buffer.byteLength(key, 'utf8');
    if (bytes > MAX_KEY_LENGTH) {
      throw new UnrepresentableError(
        `key "${shown(key)}" is ${bytes} UTF-8 bytes; S3 keys are at most ${MAX_KEY_LENGTH}`,
      );
    }
    return;
  }
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
  if (key.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw new UnrepresentableError(
      `key "${shown(key)}" has a "." or ".." path segment, which Azure resolves away`,
    );
  }
}

/** Joins a destination prefix and a relative key: `joinKey('in/', 'a/b')` is `in/a/b`. */
export function joinKey(prefix: string, relative: string): string {
  if (prefix === '') return relative;
  return prefix.endsWith('/') ? `${prefix}${relative}` : `${prefix}/${relative}`;
}

/** The part of `key` after `prefix`; `key` must start with it. */
export function relativeKey(prefix: string, key: string): string {
  if (!key.startsWith(prefix)) throw new RangeError(`"${key}" is not under "${prefix}"`);
  return key.slice(prefix.length);
}
