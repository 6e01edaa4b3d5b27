import { describe, expect, it } from 'vitest';
import {
  AZURE_BLOCK_BLOB_LIMITS,
  formatBytes,
  parseSize,
  planRanges,
  type RangePlan,
  S3_LIMITS,
} from '../../src/core/range-plan.ts';
import { UnrepresentableError, UsageError } from '../../src/errors.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const PART = 8 * MiB;

/** Every staged plan must cover the object exactly, in order, without gaps or overlaps. */
function expectCovers(plan: RangePlan, size: number): void {
  if (plan.mode === 'single') return;
  let next = 0;
  plan.parts.forEach((part, index) => {
    expect(part.partNumber).toBe(index + 1);
    expect(part.start).toBe(next);
    expect(part.size).toBe(part.end - part.start + 1);
    expect(part.size).toBeGreaterThan(0);
    expect(part.size).toBeLessThanOrEqual(plan.partSize);
    next = part.end + 1;
  });
  expect(next).toBe(size);
}

describe('Function: planRanges', () => {
  it.each([
    ['0 B', 0, 'single', 0],
    ['1 B', 1, 'single', 0],
    ['part-1', PART - 1, 'single', 0],
    ['part', PART, 'single', 0],
    ['part+1', PART + 1, 'staged', 2],
    ['3 parts and a bit', 3 * PART + 5, 'staged', 4],
  ])('plans %s', (_label, size, mode, parts) => {
    for (const limits of [S3_LIMITS, AZURE_BLOCK_BLOB_LIMITS]) {
      const plan = planRanges(size, { partSize: PART, limits });
      expect(plan.mode).toBe(mode);
      if (plan.mode === 'staged') {
        expect(plan.parts).toHaveLength(parts);
        expect(plan.partSize).toBe(PART);
        expect(plan.parts.at(-1)?.size).toBe(size - (parts - 1) * PART);
      }
      expectCovers(plan, size);
    }
  });

  it('keeps the part size at exactly the 10,000-part S3 limit', () => {
    const size = 10_000 * PART;
    const plan = planRanges(size, { partSize: PART, limits: S3_LIMITS });
    expect(plan.mode === 'staged' && plan.parts.length).toBe(10_000);
    expect(plan.mode === 'staged' && plan.partSize).toBe(PART);
    expectCovers(plan, size);
  });

  it('grows the part size one byte past the 10,000-part S3 limit', () => {
    const size = 10_000 * PART + 1;
    const plan = planRanges(size, { partSize: PART, limits: S3_LIMITS });
    expect(plan.mode).toBe('staged');
    if (plan.mode !== 'staged') return;
    expect(plan.partSize).toBe(PART + MiB);
    expect(plan.parts.length).toBeLessThanOrEqual(10_000);
    expect(plan.partSize % MiB).toBe(0);
    expectCovers(plan, size);
  });

  it('keeps the block size at exactly the 50,000-block Azure limit and grows it past', () => {
    const at = planRanges(50_000 * PART, { partSize: PART, limits: AZURE_BLOCK_BLOB_LIMITS });
    expect(at.mode === 'staged' && at.parts.length).toBe(50_000);
    const past = planRanges(50_000 * PART + 1, { partSize: PART, limits: AZURE_BLOCK_BLOB_LIMITS });
    expect(past.mode === 'staged' && past.partSize).toBe(PART + MiB);
    expect(past.mode === 'staged' && past.parts.length).toBeLessThanOrEqual(50_000);
    expectCovers(past, 50_000 * PART + 1);
  });

  it('fits the largest S3 object, and refuses one byte more', () => {
    const max = S3_LIMITS.maxObjectSize;
    const plan = planRanges(max, { partSize: PART, limits: S3_LIMITS });
    expect(plan.mode === 'staged' && plan.parts.length).toBeLessThanOrEqual(10_000);
    expect(plan.mode === 'staged' && plan.partSize).toBeLessThanOrEqual(5 * GiB);
    expectCovers(plan, max);
    expect(() => planRanges(max + 1, { partSize: PART, limits: S3_LIMITS })).toThrow(
      UnrepresentableError,
    );
  });

  it('fits the largest Azure blob, and refuses one byte more', () => {
    const max = AZURE_BLOCK_BLOB_LIMITS.maxObjectSize;
    const plan = planRanges(max, { partSize: PART, limits: AZURE_BLOCK_BLOB_LIMITS });
    expect(plan.mode === 'staged' && plan.parts.length).toBe(50_000);
    expect(plan.mode === 'staged' && plan.partSize).toBe(4000 * MiB);
    expect(() => planRanges(max + 1, { partSize: PART, limits: AZURE_BLOCK_BLOB_LIMITS })).toThrow(
      /larger than the destination's maximum/,
    );
  });

  it('raises a part size below the S3 minimum to 5 MiB', () => {
    const plan = planRanges(12 * MiB, { partSize: MiB, limits: S3_LIMITS });
    expect(plan.mode === 'staged' && plan.partSize).toBe(5 * MiB);
    expect(plan.mode === 'staged' && plan.parts.map((p) => p.size)).toEqual([
      5 * MiB,
      5 * MiB,
      2 * MiB,
    ]);
  });

  it.each([0, -1, 1.5, Number.NaN])('refuses a part size of %s', (partSize) => {
    expect(() => planRanges(10, { partSize, limits: S3_LIMITS })).toThrow(UsageError);
  });
});

describe('Function: parseSize', () => {
  it.each([
    ['8388608', 8 * MiB],
    ['8MiB', 8 * MiB],
    ['8mib', 8 * MiB],
    ['64MB', 64_000_000],
    ['1GiB', GiB],
    ['512KiB', 512 * 1024],
    ['1.5GiB', 1.5 * GiB],
    ['100B', 100],
    ['2 MiB', 2 * MiB],
  ])('reads %s', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['', 'abc', '8XB', '-1', '0', '1.2.3MiB', 'MiB'])('refuses "%s" naming it', (text) => {
    expect(() => parseSize(text)).toThrow(UsageError);
    expect(() => parseSize(text)).toThrow(
      text === '' ? /""/ : new RegExp(text.replace('.', '\\.')),
    );
  });
});

describe('Function: formatBytes', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [8 * MiB, '8.0 MiB'],
    [1.5 * GiB, '1.5 GiB'],
  ])('formats %d as %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});
