import { UnrepresentableError, UsageError } from '../errors.ts';
import type { StoreLimits } from '../stores/object-store.ts';
import { formatBytes, planRanges, type RangePlan } from './range-plan.ts';

const MiB = 1024 * 1024;

/**
 * What one range in flight holds when its part is streamed from the source to the destination
 * (the source response's and the request's stream buffers, one 64 KiB aws-chunked chunk, and
 * what the garbage collector has not taken back yet), rounded up: `npm run bench -- memory`
 * measured about 4.7 MiB a lane of 8 between a 64 MiB and a 2 GiB copy, most of it heap not
 * yet collected.
 */
export const STREAMED_LANE_BYTES = 4 * MiB;

/** The smallest budget a copy accepts: one streamed lane and a small object in one request. */
export const MIN_MEMORY_BUDGET = 16 * MiB;

/**
 * What a copy function keeps for itself, outside the copies' budget: Node.js, the SDKs and the
 * handler code. The functions' resident size after a copy is about 150 MB (`npm run bench --
 * memory` reports it).
 */
export const FUNCTION_RESERVED_BYTES = 192 * MiB;

/** How one copy holds its bytes: the plan of its parts, and how many it moves at once. */
export interface MemoryPlan {
  plan: RangePlan;
  /** The part size the plan was made from (what a resumed copy must plan from again). */
  preferredPartSize: number;
  /** Ranges in flight. */
  concurrency: number;
  /** The most bytes the copy holds at once: a single request's body, or its lanes. */
  peakBytes: number;
}

export interface MemoryPlanOptions {
  /** Preferred part size; lowered to fit the budget where parts are held whole. */
  partSize: number;
  /** Most ranges in flight wanted. */
  concurrency: number;
  /** Bytes the copy may hold at once; undefined: concurrency x part size, unchecked. */
  budget: number | undefined;
  limits: StoreLimits;
  /**
   * The destination takes a part as a stream with a trailing checksum (S3), so a part costs a
   * lane's stream buffers whatever its size; otherwise each part in flight is held whole, since
   * its checksum goes ahead of its bytes (Azure's Content-MD5).
   */
  streamsParts: boolean;
  /**
   * Parts already fixed by a staged upload being resumed: the plan must keep them, and only
   * the concurrency is fitted to the budget (one range at a time when even one part exceeds it).
   */
  fixedPartSize?: number;
}

/**
 * Plans a copy of `size` bytes against a memory budget. A single request holds the whole object,
 * so only objects within the budget go in one; larger ones are staged. Streamed parts cost
 * `STREAMED_LANE_BYTES` a lane; whole parts cost their size, so the part size is lowered to the
 * budget (the store's part limits permitting) and the concurrency to what the budget holds. Pure.
 *
 * @throws UnrepresentableError when even one part the store's limits require exceeds the budget
 *   (the message names both and the memory that would do).
 */
export function planMemory(size: number, options: MemoryPlanOptions): MemoryPlan {
  const { budget, limits, streamsParts } = options;
  const wanted = options.fixedPartSize ?? options.partSize;
  if (budget === undefined) {
    const plan = planRanges(size, { partSize: wanted, limits });
    return {
      plan,
      preferredPartSize: wanted,
      concurrency: options.concurrency,
      peakBytes: plan.mode === 'single' ? size : options.concurrency * plan.partSize,
    };
  }
  if (!Number.isSafeInteger(budget) || budget < MIN_MEMORY_BUDGET) {
    throw new UsageError(
      `the memory budget must be at least ${formatBytes(MIN_MEMORY_BUDGET)}, got ${budget} bytes`,
    );
  }
  // A single request is read whole (its MD5 goes into the replica marker before it is sent).
  const partSize = options.fixedPartSize ?? Math.min(wanted, budget);
  const plan = planRanges(size, { partSize, limits });
  if (plan.mode === 'single') {
    return { plan, preferredPartSize: partSize, concurrency: 1, peakBytes: size };
  }
  const laneBytes = streamsParts ? STREAMED_LANE_BYTES : plan.partSize;
  if (laneBytes > budget && options.fixedPartSize === undefined) {
    throw new UnrepresentableError(
      `an object of ${formatBytes(size)} needs parts of ${formatBytes(plan.partSize)} at this destination, more than the memory budget of ${formatBytes(budget)}; give the copy at least ${formatBytes(plan.partSize)}`,
    );
  }
  const concurrency = Math.max(1, Math.min(options.concurrency, Math.floor(budget / laneBytes)));
  return { plan, preferredPartSize: partSize, concurrency, peakBytes: concurrency * laneBytes };
}

/**
 * The budget of each copy in a copy function: its configured memory
 * (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB) less what the function keeps for itself, shared by
 * the records of a batch, which run at once. `fallbackMb` stands in where the variable is not
 * set (the local mirror).
 */
export function functionMemoryBudget(
  env: Record<string, string | undefined>,
  records: number,
  fallbackMb: number,
): number {
  const text = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
  const configured = text !== undefined && /^\d+$/.test(text) ? Number(text) : fallbackMb;
  const usable = configured * MiB - FUNCTION_RESERVED_BYTES;
  return Math.max(MIN_MEMORY_BUDGET, Math.floor(usable / Math.max(1, records)));
}
