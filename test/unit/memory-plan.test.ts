import { describe, expect, it } from 'vitest';
import {
  FUNCTION_RESERVED_BYTES,
  functionMemoryBudget,
  MIN_MEMORY_BUDGET,
  planMemory,
  STREAMED_LANE_BYTES,
} from '../../src/core/memory-plan.ts';
import { AZURE_BLOCK_BLOB_LIMITS, S3_LIMITS } from '../../src/core/range-plan.ts';
import { UnrepresentableError, UsageError } from '../../src/errors.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
// A 2048 MB copy function running a batch of 4: each copy's share.
const SHARE = functionMemoryBudget({ AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '2048' }, 4, 1024);

describe('Function: planMemory', () => {
  it('copies 5 TiB to S3 within a 2048 MB function: parts grow, but are streamed', () => {
    const memory = planMemory(5 * TiB, {
      partSize: 8 * MiB,
      concurrency: 8,
      budget: SHARE,
      limits: S3_LIMITS,
      streamsParts: true,
    });
    expect(memory.plan.mode).toBe('staged');
    if (memory.plan.mode !== 'staged') return;
    expect(memory.plan.partSize).toBe(525 * MiB);
    expect(memory.plan.parts).toHaveLength(Math.ceil((5 * TiB) / (525 * MiB)));
    expect(memory.concurrency).toBe(8);
    expect(memory.peakBytes).toBe(8 * STREAMED_LANE_BYTES);
    expect(memory.peakBytes).toBeLessThanOrEqual(SHARE);
  });

  it('copies 5 TiB to Azure within a 2048 MB function: blocks held whole, fewer at once', () => {
    const memory = planMemory(5 * TiB, {
      partSize: 8 * MiB,
      concurrency: 8,
      budget: SHARE,
      limits: AZURE_BLOCK_BLOB_LIMITS,
      streamsParts: false,
    });
    if (memory.plan.mode !== 'staged') throw new Error('expected a staged plan');
    expect(memory.plan.partSize).toBe(105 * MiB);
    expect(memory.concurrency).toBe(Math.floor(SHARE / (105 * MiB)));
    expect(memory.concurrency).toBeGreaterThanOrEqual(1);
    expect(memory.peakBytes).toBeLessThanOrEqual(SHARE);
  });

  it('lowers the part size to the budget and runs fewer parts at once where they are held whole', () => {
    const memory = planMemory(1 * GiB, {
      partSize: 64 * MiB,
      concurrency: 8,
      budget: 40 * MiB,
      limits: AZURE_BLOCK_BLOB_LIMITS,
      streamsParts: false,
    });
    if (memory.plan.mode !== 'staged') throw new Error('expected a staged plan');
    expect(memory.plan.partSize).toBe(40 * MiB);
    expect(memory.preferredPartSize).toBe(40 * MiB);
    expect(memory.concurrency).toBe(1);
    expect(memory.peakBytes).toBe(40 * MiB);
  });

  it('stages an object larger than the budget that would otherwise go in one request', () => {
    const memory = planMemory(100 * MiB, {
      partSize: 256 * MiB,
      concurrency: 4,
      budget: 32 * MiB,
      limits: S3_LIMITS,
      streamsParts: true,
    });
    expect(memory.plan.mode).toBe('staged');
    expect(memory.peakBytes).toBeLessThanOrEqual(32 * MiB);
    const small = planMemory(10 * MiB, {
      partSize: 256 * MiB,
      concurrency: 4,
      budget: 32 * MiB,
      limits: S3_LIMITS,
      streamsParts: true,
    });
    expect(small).toMatchObject({ plan: { mode: 'single' }, concurrency: 1, peakBytes: 10 * MiB });
  });

  it('keeps the part size of a resumed upload, and fits only the concurrency to the budget', () => {
    const memory = planMemory(1 * GiB, {
      partSize: 8 * MiB,
      fixedPartSize: 64 * MiB,
      concurrency: 8,
      budget: 32 * MiB,
      limits: AZURE_BLOCK_BLOB_LIMITS,
      streamsParts: false,
    });
    if (memory.plan.mode !== 'staged') throw new Error('expected a staged plan');
    expect(memory.plan.partSize).toBe(64 * MiB);
    expect(memory.preferredPartSize).toBe(64 * MiB);
    expect(memory.concurrency).toBe(1);
  });

  it('refuses a copy whose smallest possible block exceeds the budget, naming both', () => {
    const plan = () =>
      planMemory(1000 * 4000 * MiB * 50, {
        partSize: 8 * MiB,
        concurrency: 4,
        budget: 64 * MiB,
        limits: AZURE_BLOCK_BLOB_LIMITS,
        streamsParts: false,
      });
    expect(plan).toThrow(UnrepresentableError);
    expect(plan).toThrow(/needs parts of 3\.9 GiB .* memory budget of 64\.0 MiB/);
  });

  it('refuses a budget below the minimum', () => {
    expect(() =>
      planMemory(GiB, {
        partSize: 8 * MiB,
        concurrency: 4,
        budget: MIN_MEMORY_BUDGET - 1,
        limits: S3_LIMITS,
        streamsParts: true,
      }),
    ).toThrow(UsageError);
  });

  it('without a budget, plans as before: concurrency x part size', () => {
    const memory = planMemory(GiB, {
      partSize: 8 * MiB,
      concurrency: 8,
      budget: undefined,
      limits: S3_LIMITS,
      streamsParts: false,
    });
    expect(memory).toMatchObject({
      concurrency: 8,
      peakBytes: 64 * MiB,
      preferredPartSize: 8 * MiB,
    });
  });
});

describe('Function: functionMemoryBudget', () => {
  it("shares the function's memory, less its own, among the records of a batch", () => {
    expect(functionMemoryBudget({ AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '2048' }, 4, 1024)).toBe(
      Math.floor((2048 * MiB - FUNCTION_RESERVED_BYTES) / 4),
    );
  });

  it('uses the fallback where the variable is not set, and never goes below the minimum', () => {
    expect(functionMemoryBudget({}, 1, 1024)).toBe(1024 * MiB - FUNCTION_RESERVED_BYTES);
    expect(functionMemoryBudget({ AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '128' }, 10, 1024)).toBe(
      MIN_MEMORY_BUDGET,
    );
  });
});
