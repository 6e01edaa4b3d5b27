import type { ReplicationRule } from '../config/schema.ts';
import { type Decision, decide, looksLikeEcho, type SkipReason } from '../core/decide.ts';
import { checkAddressable } from '../core/keys.ts';
import { parseSize } from '../core/range-plan.ts';
import type { CopyTask } from '../core/route.ts';
import { PreconditionFailedError, RetryableError } from '../errors.ts';
import {
  type ObjectHead,
  type ObjectStore,
  readsSmall,
  type WriteCondition,
} from '../stores/object-store.ts';
import {
  abandonCheckpoint,
  type CopyCheckpoint,
  type CopyObjectRequest,
  copyObject,
  SourceChangedError,
} from './copy-object.ts';
import type { PullMemory } from './pull-memory.ts';

/** What one task did. */
export type TaskOutcome =
  | {
      action: 'copied';
      bytes: number;
      conflict: boolean;
      transfer: 'pull' | 'stream';
      decisions: number;
    }
  | { action: 'deleted'; decisions: number }
  | { action: 'skipped'; reason: SkipReason; detail: string; decisions: number };

export interface TaskContext {
  rule: ReplicationRule;
  source: ObjectStore;
  destination: ObjectStore;
  pullMemory?: PullMemory;
  signal?: AbortSignal;
  log?: (message: string) => void;
  /** Where an earlier run of this task stopped; see `CopyObjectRequest.resume`. */
  resume?: CopyCheckpoint;
  /** See `CopyObjectRequest.keepStagedOnStop`. */
  keepStagedOnStop?: boolean;
  /** Bytes the copy may hold at once; see `CopyObjectRequest.memoryBudget`. */
  memoryBudget?: number;
  /** Splits copies of very large objects over parallel invocations; absent: never. */
  fanOut?: FanOutHook;
  /** An earlier run held this delete; see `DecisionInput.held`. */
  held?: { etag: string; over: boolean };
  /**
   * The largest source this run copies (the plan step copies small objects only): a larger one
   * fails the task with a retryable error before anything is written, for the copy step.
   */
  maxSourceBytes?: number;
}

/**
 * A delete in doubt (see `decide`): the destination version `etag` may be newer than the
 * delete. The task is to run again after a hold, with `TaskContext.held`.
 */
export interface HeldDelete {
  action: 'held';
  etag: string;
  detail: string;
  decisions: number;
}

/** A copy too large for one invocation's stream, split into range tasks and a finishing task. */
export interface FannedOut {
  action: 'fanned-out';
  ranges: number;
  bytes: number;
  decisions: number;
}

/** How a task splits the copy of a very large object (see src/queue/fan-out.ts). */
export interface FanOutHook {
  /** Objects larger than this many bytes are fanned out. */
  above: number;
  /** Opens the staged upload and sends its range and finishing tasks; resolves to the ranges. */
  start(
    request: CopyObjectRequest,
    head: ObjectHead,
    condition: WriteCondition,
    conflict: boolean,
  ): Promise<number>;
}

/**
 * The copy request of a task: the rule's part size, concurrency and name, the event's
 * sequencer where it describes the live version, and the context's budget, memory and signal.
 */
export function copyRequestFor(
  task: CopyTask,
  context: TaskContext,
  sourceHead: ObjectHead | undefined,
): CopyObjectRequest {
  const { rule } = context;
  return {
    source: context.source,
    sourceKey: task.sourceKey,
    destination: context.destination,
    destinationKey: task.destinationKey,
    partSize: parseSize(String(rule.partSize)),
    concurrency: rule.concurrency,
    rule: rule.name,
    // The event's sequencer describes the version it announced, not always the live one.
    ...(task.sequencer !== undefined &&
      (task.etag === undefined || task.etag === sourceHead?.etag) && {
        sourceSequencer: task.sequencer,
      }),
    ...(sourceHead && { sourceHead }),
    ...(context.pullMemory && { pullMemory: context.pullMemory }),
    ...(context.signal && { signal: context.signal }),
    ...(context.log && { log: context.log }),
    ...(context.keepStagedOnStop && { keepStagedOnStop: true }),
    ...(context.memoryBudget !== undefined && { memoryBudget: context.memoryBudget }),
  };
}

// Each lost race means another writer got there between our read and our commit; three in a
// row means the key is busy, and the message's own retry (with backoff) is the better wait.
const MAX_DECISIONS = 3;

/**
 * Objects up to this size are copied in one request each way through this process (a GET
 * read `If-Match` the version decided on, then a conditional PUT), which takes fewer requests
 * than a server-side pull (presign, pull, and a re-read of the source to prove it did not
 * change); larger ones are pulled where the destination can.
 */
export const SMALL_OBJECT_BYTES = 1024 * 1024;

/**
 * Objects up to this size are first written as a create, without reading the destination.
 * When the key exists after all (an overwrite), that write is refused and its bytes were sent
 * for nothing, so the bound keeps the waste small.
 */
export const CREATE_FIRST_BYTES = 64 * 1024;

/**
 * Executes one task: reads the live state of both sides, decides (`decide`), then
 * copies or deletes conditionally on what it read. A 412 means the destination changed in
 * between: read again and decide again.
 *
 * A new object is usually absent on the other side, so an object of up to
 * `CREATE_FIRST_BYTES` is first tried as a create (`If-None-Match: *`) without reading the
 * destination: when that answers 412 the destination exists, and the task reads it and
 * decides as always. A create can only succeed where the full decision would have copied too
 * (nothing there to be newer, equal or ours).
 */
export async function runCopyTask(
  task: CopyTask,
  context: TaskContext,
): Promise<TaskOutcome | FannedOut | HeldDelete> {
  const { rule, source, destination } = context;
  // Before any request: an SDK resolves "./" and "../" in a blob name (reading or deleting
  // another blob) and fails on a lone surrogate; such keys cannot name an object there.
  checkAddressable(source.side, task.sourceKey);
  checkAddressable(destination.side, task.destinationKey);
  const call = context.signal ? { signal: context.signal } : {};
  let sourceHead: ObjectHead | undefined;
  let limit = MAX_DECISIONS;
  // Only the first copy can go on from the earlier run: a failed one gave its upload up.
  let resume = context.resume;
  // The bytes of `sourceHead`'s version, when one GET read both (a small new object).
  let sourceBody: Buffer | undefined;
  for (let decisions = 1; decisions <= limit; decisions++) {
    // After a create that found the destination there, the source just read is still the
    // one to copy; after a change, it is read again (HEAD) with nothing of the old bytes.
    if (sourceHead === undefined) {
      if (
        decisions === 1 &&
        task.kind === 'created' &&
        task.size !== undefined &&
        task.size <= CREATE_FIRST_BYTES &&
        readsSmall(source)
      ) {
        // One GET answers what a HEAD would, and brings the bytes along.
        const small = await source.getSmall(task.sourceKey, CREATE_FIRST_BYTES, call);
        sourceHead = small?.head;
        sourceBody = small?.body;
      } else {
        sourceBody = undefined;
        sourceHead = await source.head(task.sourceKey, call);
      }
    }
    if (
      sourceHead !== undefined &&
      context.maxSourceBytes !== undefined &&
      sourceHead.size > context.maxSourceBytes
    ) {
      throw new RetryableError(
        `${source.describe(task.sourceKey)} holds ${sourceHead.size} bytes, more than the ${context.maxSourceBytes} this run copies`,
      );
    }
    const small = sourceHead !== undefined && sourceHead.size <= SMALL_OBJECT_BYTES;
    // Only the first decision may assume the destination absent. A source that looks like
    // our own replica needs the destination to tell an echo from a rollback.
    const tryCreate =
      decisions === 1 &&
      task.kind === 'created' &&
      sourceHead !== undefined &&
      sourceHead.size <= CREATE_FIRST_BYTES &&
      !looksLikeEcho(task, sourceHead);
    const destinationHead = tryCreate
      ? undefined
      : await destination.head(task.destinationKey, call);
    const decision: Decision = decide({
      task,
      selected: true,
      mirrorDeletes: rule.deletes === 'mirror',
      tieWinner: rule.conflictWinner,
      source: sourceHead,
      destination: destinationHead,
      ...(context.held && { held: context.held }),
    });
    if (resume && decision.action !== 'copy') {
      // Nothing will commit what the earlier run staged.
      await abandonCheckpoint(destination, task.destinationKey, resume);
      resume = undefined;
    }
    const resumeNow = resume;
    resume = undefined;
    try {
      if (decision.action === 'skip') {
        return { action: 'skipped', reason: decision.reason, detail: decision.detail, decisions };
      }
      if (decision.action === 'hold') {
        return { action: 'held', etag: decision.etag, detail: decision.detail, decisions };
      }
      if (decision.action === 'delete') {
        if (decision.sourceCondition) {
          await source.delete(task.sourceKey, { ...call, condition: decision.sourceCondition });
          sourceHead = undefined;
        }
        await destination.delete(task.destinationKey, { ...call, condition: decision.condition });
        return { action: 'deleted', decisions };
      }
      const request = copyRequestFor(task, context, sourceHead);
      if (context.fanOut && sourceHead && !resumeNow && sourceHead.size > context.fanOut.above) {
        const ranges = await context.fanOut.start(
          request,
          sourceHead,
          decision.condition,
          decision.conflict,
        );
        return { action: 'fanned-out', ranges, bytes: sourceHead.size, decisions };
      }
      const result = await copyObject({
        ...request,
        condition: decision.condition,
        // A source that changes mid-copy may now be a replica, or older than the destination:
        // the task decides again rather than copying whatever the source became.
        maxRestarts: 0,
        ...(small && { transfer: 'stream' as const }),
        ...(sourceBody && { sourceBody }),
        ...(resumeNow && { resume: resumeNow }),
      });
      return {
        action: 'copied',
        bytes: result.size,
        conflict: decision.conflict,
        transfer: result.transfer,
        decisions,
      };
    } catch (error) {
      const sourceChanged =
        error instanceof SourceChangedError ||
        (error instanceof Error && error.cause instanceof SourceChangedError);
      if (!(error instanceof PreconditionFailedError) && !sourceChanged) throw error;
      if (tryCreate && !sourceChanged) {
        // The destination exists: read it and decide (one more decision than otherwise).
        limit += 1;
        continue;
      }
      sourceHead = undefined;
      context.log?.(
        sourceChanged
          ? `${source.describe(task.sourceKey)} changed during the copy; deciding again`
          : `${destination.describe(task.destinationKey)} changed before the commit; deciding again`,
      );
    }
  }
  throw new RetryableError(
    `${destination.describe(task.destinationKey)} changed ${MAX_DECISIONS} times while this task ran; retrying later`,
  );
}
