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

export type RangePlan =
  | { mode: 'single' }
  | { mode: 'staged'; partSize: number; parts: PlannedRange[] };

/**
 * The stricter of two sets of limits. The engine plans against the destination's staging
 * limits; ranged reads from the source have no part limits of their own.
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

/**
 * Plans how an object of `size` bytes is written: in one request when it fits in one part,
 * otherwise in parts of `partSize`, grown (to a whole MiB) when the object would need more
 * parts than the store allows. Pure.
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
      `an object of ${formatBytes(size)} is larger than the destination's maximum of ${formatBytes(limits.maxObjectSize)}`,
    );
  }
  if (size <= options.partSize && size <= limits.maxSinglePutSize) return { mode: 'single' };

  let partSize = Math.min(Math.max(options.partSize, limits.minPartSize), limits.maxPartSize);
  if (Math.ceil(size / partSize) > limits.maxParts) {
    partSize = Math.ceil(size / limits.maxParts / MiB) * MiB;
  }
  if (partSize > limits.maxPartSize || Math.ceil(size / partSize) > limits.maxParts) {
    throw new UnrepresentableError(
      `an object of ${formatBytes(size)} does not fit in ${limits.maxParts} parts of at most ${formatBytes(limits.maxPartSize)}`,
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

/** Parses `8388608`, `8MiB`, `64MB`, `1.5GiB`: binary units are powers of 1024, decimal of 1000. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = UNITS[(match?.[2] ?? '').toLowerCase()];
  if (!match?.[1] || unit === undefined) {
    throw new UsageError(`"${text}" is not a size (use bytes or a unit: 512KiB, 8MiB, 64MB, 1GiB)`);
  }
  const bytes = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new UsageError(`"${text}" is not a positive size`);
  }
  return bytes;
}

/** `8.0 MiB`, for people. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let index = 0;
  while (value >= 1024 && index < units.length - 1) {
    value /= 1024;
    index++;
  }
  return index === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[index]}`;
}
