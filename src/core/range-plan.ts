import { UnrepresentableError, UsageError } from '../errors.ts';
import type { StoreLimits } from '../stores/object-store.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

/**
 * Amazon S3 limits: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10,000 parts,
 * a single PUT up to 5 GiB, objects up to 5 TiB.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/upload-objects.html
 */
export const S3_LIMITS: StoreLimits = {
  maxObjectSize: 5 * TiB,
  maxSinglePutSize: 5 * GiB,
  maxParts: 10_000,
  minPartSize: 5 * MiB,
  maxPartSize: 5 * GiB,
};

/**
 * Azure block blob limits (service version 2019-12-12 and later): blocks up to 4,000 MiB, at
 * most 50,000 blocks, a single Put Blob up to 5,000 MiB, so blobs up to 50,000 x 4,000 MiB.
 * https://learn.microsoft.com/rest/api/storageservices/understanding-block-blobs--append-blobs--and-page-blobs
 */
export const AZURE_BLOCK_BLOB_LIMITS: StoreLimits = {
  maxObjectSize: 50_000 * 4000 * MiB,
  maxSinglePutSize: 5000 * MiB,
  maxParts: 50_000,
  minPartSize: 1,
  maxPartSize: 4000 * MiB,
};

/** One part of a staged copy; `end` is inclusive, as in an HTTP Range header. */
export interface PlannedRange {
  partNumber: number;
  start: number;
  end: number;
  size: number;
}

/**
 * How one object is written: in one request, or staged in parts that cover it exactly, in
 * order, without gaps or overlaps (every part `partSize` bytes except a smaller last one).
 */
export type RangePlan =
  | { mode: 'single' }
  | { mode: 'staged'; partSize: number; parts: PlannedRange[] };

/**
 * The stricter of each of two sets of limits: the smaller maximums and part count, the larger
 * minimum part size.
 *
 * The copy engine plans against the destination's staging limits alone: the source is read
 * with ranged GETs, which accept any range, so it adds no part limits of its own. Use this
 * only when one plan must satisfy two stores at once (a plan reused for both directions, or a
 * store behind a proxy with its own caps). The result can be unsatisfiable (a minimum part
 * above the maximum); `planRanges` then refuses objects that need parts.
 */
export function combineLimits(a: StoreLimits, b: StoreLimits): StoreLimits {
  return {
    maxObjectSize: Math.min(a.maxObjectSize, b.maxObjectSize),
    maxSinglePutSize: Math.min(a.maxSinglePutSize, b.maxSinglePutSize),
    maxParts: Math.min(a.maxParts, b.maxParts),
    minPartSize: Math.max(a.minPartSize, b.minPartSize),
    maxPartSize: Math.min(a.maxPartSize, b.maxPartSize),
  };
}

/** `5497558138880 bytes (5.0 TiB)`: exact, since a limit and one byte past it format alike. */
function exactly(bytes: number): string {
  return bytes < KiB ? `${bytes} B` : `${bytes} bytes (${formatBytes(bytes)})`;
}

/** `Math.ceil(a / b)` for non-negative safe integers, without floating-point rounding. */
function ceilDiv(a: number, b: number): number {
  return Math.floor(a / b) + (a % b === 0 ? 0 : 1);
}

/**
 * Plans how an object of `size` bytes is written. One request (`single`) when it fits in one
 * part and in the store's single-request limit, 0 B included. Otherwise parts of `partSize`
 * (raised to the store's minimum part size, lowered to its maximum), the last one smaller; when
 * that would need more parts than the store allows, the part size grows to the smallest whole
 * MiB that fits. Pure.
 *
 * @throws UsageError when `partSize` or `size` is not a positive (for `size`: non-negative)
 *   whole number of bytes.
 * @throws UnrepresentableError when the object is larger than the store's maximum, or cannot be
 *   split into at most `maxParts` parts of at most `maxPartSize`; the message names the size
 *   and the limit.
 */
export function planRanges(
  size: number,
  options: { partSize: number; limits: StoreLimits },
): RangePlan {
  const { limits } = options;
  if (!Number.isSafeInteger(options.partSize) || options.partSize <= 0) {
    throw new UsageError(
      `part size must be a positive whole number of bytes, got ${options.partSize}`,
    );
  }
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new UsageError(`object size must be a whole number of bytes, got ${size}`);
  }
  if (size > limits.maxObjectSize) {
    throw new UnrepresentableError(
      `an object of ${exactly(size)} is larger than the destination's maximum object size of ${exactly(limits.maxObjectSize)}`,
    );
  }
  if (size <= options.partSize && size <= limits.maxSinglePutSize) return { mode: 'single' };

  let partSize = Math.min(Math.max(options.partSize, limits.minPartSize), limits.maxPartSize);
  if (ceilDiv(size, partSize) > limits.maxParts) {
    // The smallest part size that fits, rounded up to a whole MiB so plans stay readable.
    const needed = ceilDiv(ceilDiv(size, limits.maxParts), MiB) * MiB;
    partSize = Math.min(needed, limits.maxPartSize);
  }
  if (
    partSize < limits.minPartSize ||
    partSize > limits.maxPartSize ||
    ceilDiv(size, partSize) > limits.maxParts
  ) {
    throw new UnrepresentableError(
      `an object of ${exactly(size)} does not fit in the destination's limit of ${limits.maxParts} parts of ${exactly(limits.minPartSize)} to ${exactly(limits.maxPartSize)}`,
    );
  }
  const parts: PlannedRange[] = [];
  for (let start = 0, partNumber = 1; start < size; start += partSize, partNumber++) {
    const end = Math.min(start + partSize, size) - 1;
    parts.push({ partNumber, start, end, size: end - start + 1 });
  }
  return { mode: 'staged', partSize, parts };
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kib: KiB,
  mib: MiB,
  gib: GiB,
  tib: TiB,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  tb: 1000 ** 4,
};

/**
 * Parses a size: a whole number of bytes (`8388608`, `100B`) or a number with a unit (`8MiB`,
 * `64MB`, `1.5GiB`, `512 KiB`). KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB powers of
 * 1000; units are case-insensitive. A fraction is rounded to the nearest byte.
 *
 * @throws UsageError naming `text` when it is not a positive size (negative, zero, empty,
 *   unknown unit, not a number) or is too large to count exactly.
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = UNITS[(match?.[2] ?? '').toLowerCase()];
  if (!match?.[1] || unit === undefined) {
    throw new UsageError(`"${text}" is not a size (use bytes or a unit: 512KiB, 8MiB, 64MB, 1GiB)`);
  }
  const bytes = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`"${text}" is too large a size`);
  if (bytes <= 0) throw new UsageError(`"${text}" is not a positive size`);
  return bytes;
}

/** Bytes for people, in binary units with one decimal: `512 B`, `8.0 MiB`, `1.5 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let index = 0;
  // Move up while the value would print as 1024.0 or more (1048575 B is 1.0 MiB, not 1024.0 KiB).
  while (Math.abs(value) >= 1023.95 && index < units.length - 1) {
    value /= 1024;
    index++;
  }
  return index === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[index]}`;
}
