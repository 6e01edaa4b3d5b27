import { describe, expect, it } from 'vitest';
import {
  AZURE_BLOCK_BLOB_LIMITS,
  combineLimits,
  formatBytes,
  parseSize,
  planRanges,
  type RangePlan,
  S3_LIMITS,
} from '../../src/core/range-plan.ts';
import { UnrepresentableError, UsageError } from '../../src/errors.ts';
import type { StoreLimits } from '../../src/stores/object-store.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
const PART = 8 * MiB;

/**
 * The first way a staged plan fails to cover `size` bytes exactly (numbered from 1, in order,
 * contiguous, no gap or overlap, no part over `partSize`, only the last one smaller), or
 * `undefined`. Plain checks: plans of 50,000 parts would be slow as 250,000 `expect` calls.
 */
function coverageProblem(plan: RangePlan, size: number): string | undefined {
  if (plan.mode === 'single') return undefined;
  let next = 0;
  let total = 0;
  for (const [index, part] of plan.parts.entries()) {
    const last = index === plan.parts.length - 1;
    if (part.partNumber !== index + 1) return `part ${index} is numbered ${part.partNumber}`;
    if (part.start !== next) return `part ${part.partNumber} starts at ${part.start}, not ${next}`;
    if (part.size !== part.end - part.start + 1) return `part ${part.partNumber} size mismatch`;
    if (part.size <= 0 || part.size > plan.partSize) return `part ${part.partNumber} size`;
    if (!last && part.size !== plan.partSize) return `part ${part.partNumber} is short`;
    next = part.end + 1;
    total += part.size;
  }
  if (next !== size || total !== size) return `parts cover ${total} of ${size} bytes`;
  return undefined;
}

/** Plans and checks coverage, for every case. */
function plan(size: number, partSize: number, limits: StoreLimits): RangePlan {
  const result = planRanges(size, { partSize, limits });
  expect(coverageProblem(result, size)).toBeUndefined();
  return result;
}

function staged(result: RangePlan): { partSize: number; count: number; lastSize: number } {
  if (result.mode !== 'staged') throw new Error('expected a staged plan');
  return {
    partSize: result.partSize,
    count: result.parts.length,
    lastSize: result.parts.at(-1)?.size ?? 0,
  };
}

describe('Function: planRanges', () => {
  it.each([
    { label: '0 B', size: 0 },
    { label: '1 B', size: 1 },
    { label: 'part - 1', size: PART - 1 },
    { label: 'part', size: PART },
  ])('writes $label in one request on both stores', ({ size }) => {
    for (const limits of [S3_LIMITS, AZURE_BLOCK_BLOB_LIMITS]) {
      // Act
      const result = plan(size, PART, limits);

      // Assess
      expect(result).toEqual({ mode: 'single' });
    }
  });

  it.each([
    { label: 'part + 1', size: PART + 1, count: 2, lastSize: 1 },
    { label: '3 parts and 5 B', size: 3 * PART + 5, count: 4, lastSize: 5 },
    { label: 'exactly 4 parts', size: 4 * PART, count: 4, lastSize: PART },
  ])('splits $label into $count parts on both stores', ({ size, count, lastSize }) => {
    for (const limits of [S3_LIMITS, AZURE_BLOCK_BLOB_LIMITS]) {
      // Act
      const result = plan(size, PART, limits);

      // Assess
      expect(staged(result)).toEqual({ partSize: PART, count, lastSize });
    }
  });

  it.each([
    {
      label: 'exactly 10,000 S3 parts',
      limits: S3_LIMITS,
      size: 10_000 * PART,
      partSize: PART,
      count: 10_000,
    },
    {
      label: '10,000 S3 parts and 1 B (grows to 9 MiB)',
      limits: S3_LIMITS,
      size: 10_000 * PART + 1,
      partSize: 9 * MiB,
      count: Math.ceil((10_000 * PART + 1) / (9 * MiB)),
    },
    {
      label: 'exactly 50,000 Azure blocks',
      limits: AZURE_BLOCK_BLOB_LIMITS,
      size: 50_000 * PART,
      partSize: PART,
      count: 50_000,
    },
    {
      label: '50,000 Azure blocks and 1 B (grows to 9 MiB)',
      limits: AZURE_BLOCK_BLOB_LIMITS,
      size: 50_000 * PART + 1,
      partSize: 9 * MiB,
      count: Math.ceil((50_000 * PART + 1) / (9 * MiB)),
    },
    {
      label: 'the largest S3 object (5 TiB, 525 MiB parts)',
      limits: S3_LIMITS,
      size: 5 * TiB,
      partSize: 525 * MiB,
      count: Math.ceil((5 * TiB) / (525 * MiB)),
    },
    {
      label: 'the largest Azure blob (50,000 x 4000 MiB)',
      limits: AZURE_BLOCK_BLOB_LIMITS,
      size: 50_000 * 4000 * MiB,
      partSize: 4000 * MiB,
      count: 50_000,
    },
  ])('plans $label', ({ limits, size, partSize, count }) => {
    // Act
    const result = plan(size, PART, limits);

    // Assess
    const { partSize: planned, count: parts } = staged(result);
    expect({ partSize: planned, count: parts }).toEqual({ partSize, count });
    expect(parts).toBeLessThanOrEqual(limits.maxParts);
    expect(planned % MiB).toBe(0);
    expect(planned).toBeLessThanOrEqual(limits.maxPartSize);
  });

  it.each([
    { label: 'S3', limits: S3_LIMITS, max: 5 * TiB },
    { label: 'Azure', limits: AZURE_BLOCK_BLOB_LIMITS, max: 50_000 * 4000 * MiB },
  ])(
    'refuses one byte past the largest $label object, naming size and limit',
    ({ limits, max }) => {
      // Act
      const act = () => planRanges(max + 1, { partSize: PART, limits });

      // Assess
      expect(act).toThrow(UnrepresentableError);
      expect(act).toThrow(`${max + 1} bytes`);
      expect(act).toThrow(`maximum object size of ${max} bytes`);
    },
  );

  it('refuses an object that cannot fit in the parts a store allows, naming the limits', () => {
    // Prepare: a store whose maximum object size is not reachable with its part limits.
    const limits: StoreLimits = {
      maxObjectSize: TiB,
      maxSinglePutSize: MiB,
      maxParts: 4,
      minPartSize: 1,
      maxPartSize: 2 * MiB,
    };

    // Act
    const act = () => planRanges(8 * MiB + 1, { partSize: MiB, limits });

    // Assess
    expect(staged(plan(8 * MiB, MiB, limits))).toEqual({
      partSize: 2 * MiB,
      count: 4,
      lastSize: 2 * MiB,
    });
    expect(act).toThrow(UnrepresentableError);
    expect(act).toThrow(/limit of 4 parts .* to 2097152 bytes/);
  });

  it.each([
    {
      label: 'raises a part size below the S3 minimum to 5 MiB',
      size: 12 * MiB,
      partSize: MiB,
      expected: { partSize: 5 * MiB, count: 3, lastSize: 2 * MiB },
    },
    {
      label: 'lowers a part size above the S3 maximum to 5 GiB',
      size: 5 * GiB + 1,
      partSize: 6 * GiB,
      expected: { partSize: 5 * GiB, count: 2, lastSize: 1 },
    },
  ])('$label', ({ size, partSize, expected }) => {
    expect(staged(plan(size, partSize, S3_LIMITS))).toEqual(expected);
  });

  it('writes up to the single-request limit in one request, and stages past it', () => {
    // Act: S3 takes at most 5 GiB in one PUT, Azure 5000 MiB in one Put Blob.
    const atS3Limit = plan(5 * GiB, 5 * GiB, S3_LIMITS);
    const underAzureLimit = plan(4001 * MiB, 4500 * MiB, AZURE_BLOCK_BLOB_LIMITS);
    const pastAzureLimit = plan(5000 * MiB + 1, 6000 * MiB, AZURE_BLOCK_BLOB_LIMITS);

    // Assess
    expect(atS3Limit).toEqual({ mode: 'single' });
    expect(underAzureLimit).toEqual({ mode: 'single' });
    expect(staged(pastAzureLimit)).toEqual({
      partSize: 4000 * MiB,
      count: 2,
      lastSize: 1000 * MiB + 1,
    });
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])(
    'refuses a part size of %s',
    (partSize) => {
      expect(() => planRanges(10, { partSize, limits: S3_LIMITS })).toThrow(UsageError);
    },
  );

  it.each([-1, 0.5, Number.NaN])('refuses an object size of %s', (size) => {
    expect(() => planRanges(size, { partSize: PART, limits: S3_LIMITS })).toThrow(UsageError);
  });
});

describe('Function: combineLimits', () => {
  it('takes the stricter of each limit of S3 and Azure', () => {
    // Act
    const combined = combineLimits(S3_LIMITS, AZURE_BLOCK_BLOB_LIMITS);

    // Assess
    expect(combined).toEqual({
      maxObjectSize: 5 * TiB,
      maxSinglePutSize: 5000 * MiB,
      maxParts: 10_000,
      minPartSize: 5 * MiB,
      maxPartSize: 4000 * MiB,
    });
    expect(combineLimits(AZURE_BLOCK_BLOB_LIMITS, S3_LIMITS)).toEqual(combined);
  });

  it('plans the largest S3 object within both stores', () => {
    // Act
    const result = plan(5 * TiB, PART, combineLimits(S3_LIMITS, AZURE_BLOCK_BLOB_LIMITS));

    // Assess
    expect(staged(result).partSize).toBe(525 * MiB);
  });
});

describe('Function: parseSize', () => {
  it.each([
    ['8388608', 8 * MiB],
    ['8MiB', 8 * MiB],
    ['8mib', 8 * MiB],
    ['8MIB', 8 * MiB],
    ['64MB', 64_000_000],
    ['64mb', 64_000_000],
    ['1GiB', GiB],
    ['512KiB', 512 * KiB],
    ['1.5GiB', 1.5 * GiB],
    ['2TiB', 2 * TiB],
    ['1TB', 1e12],
    ['1KB', 1000],
    ['1.1KB', 1100],
    ['100B', 100],
    ['100b', 100],
    ['2 MiB', 2 * MiB],
  ])('reads %s as %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each([
    '',
    ' ',
    'abc',
    '8XB',
    '8M',
    '-1',
    '-8MiB',
    '0',
    '0MiB',
    '1.2.3MiB',
    'MiB',
    '1e3',
    '99999999TiB',
  ])('refuses "%s", naming it', (text) => {
    // Act
    const act = () => parseSize(text);

    // Assess
    expect(act).toThrow(UsageError);
    expect(act).toThrow(`"${text}"`);
  });
});

describe('Function: formatBytes', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [MiB - 1, '1.0 MiB'],
    [8 * MiB, '8.0 MiB'],
    [1.5 * GiB, '1.5 GiB'],
    [5 * TiB, '5.0 TiB'],
  ])('formats %d as %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});
