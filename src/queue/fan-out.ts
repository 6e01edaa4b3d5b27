import * as z from 'zod';
import {
  beginFanOut,
  type CopyCheckpoint,
  type CopyObjectRequest,
  commitFanOut,
  SourceChangedError,
  stageRange,
} from '../copy/copy-object.ts';
import {
  copyRequestFor,
  type FanOutHook,
  runCopyTask,
  type TaskContext,
  type TaskOutcome,
} from '../copy/run-task.ts';
import { parseSize } from '../core/range-plan.ts';
import type { CopyTask } from '../core/route.ts';
import { NotFoundError, PermanentError, PreconditionFailedError } from '../errors.ts';
import type { ObjectHead, WriteCondition } from '../stores/object-store.ts';
import type { OutgoingMessage } from './sqs.ts';
import {
  FAN_OUT_CHECK_SECONDS,
  FAN_OUT_MAX_CHECKS,
  FAN_OUT_MAX_REISSUES,
  FAN_OUT_QUIET_CHECKS,
  FAN_OUT_FIRST_CHECK_SECONDS as FIRST_CHECK_SECONDS,
} from './timing.ts';

const uploadSchema = z.strictObject({
  id: z.string().min(1),
  partSize: z.number().int().positive(),
  sourceEtag: z.string().min(1),
  sourceVersionId: z.string().min(1).optional(),
  sourceSize: z.number().int().nonnegative(),
});

/**
 * The part of a task message that makes it a range task (stage parts `first` to `last` of the
 * upload) or the finishing task (commit the upload once every part is there) of a fanned-out
 * copy.
 */
export const fanOutSchema = z.discriminatedUnion('role', [
  z.strictObject({
    role: z.literal('range'),
    upload: uploadSchema,
    first: z.number().int().min(1),
    last: z.number().int().min(1),
  }),
  z.strictObject({
    role: z.literal('finish'),
    upload: uploadSchema,
    condition: z.discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('absent') }),
      z.strictObject({ kind: z.literal('match'), etag: z.string().min(1) }),
      z.strictObject({ kind: z.literal('any') }),
    ]),
    conflict: z.boolean(),
    parts: z.number().int().min(1),
    /** Parts per range task, so that a lost range is sent again as it was. */
    rangeParts: z.number().int().min(1),
    /** Checks made so far. */
    checks: z.number().int().nonnegative(),
    /** Parts staged at the last check. */
    staged: z.number().int().nonnegative(),
    /** Checks in a row that found no new part. */
    quiet: z.number().int().nonnegative(),
    /** Times the missing ranges were sent again since the last progress. */
    reissued: z.number().int().nonnegative(),
  }),
]);

export type FanOut = z.infer<typeof fanOutSchema>;
type FinishMessage = Extract<FanOut, { role: 'finish' }>;
type RangeMessage = Extract<FanOut, { role: 'range' }>;
type UploadRef = z.infer<typeof uploadSchema>;

/** How often the finishing task looks, and when it calls a range lost; tests shorten them. */
export interface FanOutTiming {
  /** Most seconds between two checks of the finishing task (SQS delays at most 900). */
  checkSeconds?: number;
  /** Checks in a row without a new part before the missing ranges are sent again. */
  quietChecks?: number;
  /** Times the missing ranges are sent again without progress before it dead-letters. */
  maxReissues?: number;
  /** Most checks of one finishing task. */
  maxChecks?: number;
}

/** What the fan-out tasks need besides the task context. */
export interface FanOutDependencies {
  send(messages: OutgoingMessage[]): Promise<void>;
  deadLetter(body: string, reason: { reason: string; error: string }): Promise<void>;
  timing?: FanOutTiming;
  log?: (message: string) => void;
}

/** What a fan-out task did, for the record's processor to report. */
export type FanOutResult =
  | { kind: 'done'; outcome: TaskOutcome }
  | { kind: 'continued'; detail: string }
  | { kind: 'dead-lettered'; error: string };

function uploadRef(checkpoint: CopyCheckpoint): UploadRef {
  return {
    id: checkpoint.uploadId,
    partSize: checkpoint.partSize,
    sourceEtag: checkpoint.sourceEtag,
    ...(checkpoint.sourceVersionId !== undefined && {
      sourceVersionId: checkpoint.sourceVersionId,
    }),
    sourceSize: checkpoint.sourceSize,
  };
}

function checkpointOf(upload: UploadRef): CopyCheckpoint {
  return {
    uploadId: upload.id,
    partSize: upload.partSize,
    sourceEtag: upload.sourceEtag,
    ...(upload.sourceVersionId !== undefined && { sourceVersionId: upload.sourceVersionId }),
    sourceSize: upload.sourceSize,
    parts: [],
  };
}

/**
 * Seconds before the finishing task's next check: 10 s after the start, doubling with each
 * check up to `checkSeconds`, so that a copy of a few ranges commits soon after its ranges
 * are staged and a long one is not checked more often than needed.
 */
function checkDelay(checks: number, timing: FanOutTiming): number {
  return Math.min(timing.checkSeconds ?? FAN_OUT_CHECK_SECONDS, FIRST_CHECK_SECONDS * 2 ** checks);
}

function messageOf(task: CopyTask, fanOut: FanOut, delaySeconds?: number): OutgoingMessage {
  return {
    body: JSON.stringify({ ...task, fanOut }),
    ...(delaySeconds !== undefined && delaySeconds > 0 && { delaySeconds }),
  };
}

/** Range tasks for the parts of `groups` (each the index of `rangeParts` parts). */
function rangeMessages(
  task: CopyTask,
  upload: UploadRef,
  parts: number,
  rangeParts: number,
  groups: Iterable<number>,
): OutgoingMessage[] {
  return [...groups].map((group) =>
    messageOf(task, {
      role: 'range',
      upload,
      first: group * rangeParts + 1,
      last: Math.min(parts, (group + 1) * rangeParts),
    }),
  );
}

/**
 * The fan-out of a task's copy: objects above the rule's `fanOutAbove` open their staged upload
 * here and are split into range tasks of about `fanOutRangeSize` (whole parts), which run in
 * parallel invocations, and one finishing task that checks after `checkSeconds` and commits.
 * The finishing task is sent first, so that a failure to send a range leaves a task that
 * sends it again.
 */
export function fanOutHook(
  task: CopyTask,
  context: Pick<TaskContext, 'rule'>,
  dependencies: FanOutDependencies,
): FanOutHook {
  const { rule } = context;
  return {
    above: parseSize(String(rule.fanOutAbove)),
    async start(
      request: CopyObjectRequest,
      head: ObjectHead,
      condition: WriteCondition,
      conflict: boolean,
    ) {
      const begun = await beginFanOut(request, head, condition);
      const rangeParts = Math.max(
        1,
        Math.floor(parseSize(String(rule.fanOutRangeSize)) / begun.partSize),
      );
      const ranges = Math.ceil(begun.parts / rangeParts);
      const upload = uploadRef(begun.checkpoint);
      const finish: FinishMessage = {
        role: 'finish',
        upload,
        condition,
        conflict,
        parts: begun.parts,
        rangeParts,
        checks: 0,
        staged: 0,
        quiet: 0,
        reissued: 0,
      };
      await dependencies.send([messageOf(task, finish, checkDelay(0, dependencies.timing ?? {}))]);
      await dependencies.send(
        rangeMessages(task, upload, begun.parts, rangeParts, Array(ranges).keys()),
      );
      return ranges;
    },
  };
}

/**
 * Runs a range task: stages its parts into the shared upload. A source that changed or an
 * upload that is gone makes the range moot (the finishing task starts the copy over); a stop
 * by the time budget throws CopyStoppedError for the task to be continued like any copy.
 */
export async function runRangeTask(
  task: CopyTask,
  fanOut: RangeMessage,
  context: TaskContext,
  resume: CopyCheckpoint | undefined,
): Promise<FanOutResult> {
  const request = copyRequestFor(task, context, undefined);
  const range = `parts ${fanOut.first}-${fanOut.last}`;
  try {
    await stageRange(request, resume ?? checkpointOf(fanOut.upload), fanOut.first, fanOut.last);
    return { kind: 'continued', detail: `staged ${range}; the finishing task commits` };
  } catch (error) {
    if (error instanceof SourceChangedError || error instanceof NotFoundError) {
      return { kind: 'continued', detail: `${range} not staged: ${error.message}` };
    }
    throw error;
  }
}

function holds(condition: WriteCondition, head: ObjectHead | undefined): boolean {
  if (condition.kind === 'any') return true;
  return condition.kind === 'absent' ? head === undefined : head?.etag === condition.etag;
}

/**
 * Runs the finishing task of a fanned-out copy. When every part is staged it commits (on the
 * destination state the copy was decided on, and on the source being unchanged), once: a
 * second finishing task (a duplicate delivery) finds the destination changed and decides the
 * task afresh, which finds the replica up to date. While parts are missing it sends itself
 * again after `checkSeconds`; after `quietChecks` checks without a new part it sends the ranges
 * of the missing parts again (a range task lost or dead-lettered), and after `maxReissues`
 * of those without progress it dead-letters as `no-progress`. When the source or the
 * destination changed, or the upload is gone, it gives the upload up and runs the task anew.
 */
export async function runFinishTask(
  task: CopyTask,
  fanOut: FinishMessage,
  context: TaskContext,
  dependencies: FanOutDependencies,
): Promise<FanOutResult> {
  const timing = dependencies.timing ?? {};
  const checkpoint = checkpointOf(fanOut.upload);
  const request = copyRequestFor(task, context, undefined);
  const anew = async (why: string): Promise<FanOutResult> => {
    dependencies.log?.(
      `${context.destination.describe(task.destinationKey)}: ${why}; deciding the copy again`,
    );
    await context.destination
      .abortStaged({ key: task.destinationKey, uploadId: checkpoint.uploadId })
      .catch(() => undefined);
    const outcome = await runCopyTask(task, context);
    if (outcome.action === 'held') {
      // Only a delete is held, and a fanned-out copy is never a delete.
      throw new PermanentError(`a fanned-out copy was decided as a held delete: ${outcome.detail}`);
    }
    return outcome.action === 'fanned-out'
      ? { kind: 'continued', detail: `split again into ${outcome.ranges} range tasks` }
      : { kind: 'done', outcome };
  };
  const destination = await context.destination.head(
    task.destinationKey,
    context.signal ? { signal: context.signal } : {},
  );
  if (!holds(fanOut.condition, destination)) return anew('the destination changed');
  let state: Awaited<ReturnType<typeof commitFanOut>>;
  try {
    state = await commitFanOut(request, checkpoint, fanOut.condition);
  } catch (error) {
    if (error instanceof SourceChangedError) return anew('the source changed');
    if (error instanceof NotFoundError) return anew('the staged upload is gone');
    if (error instanceof PreconditionFailedError) return anew('the destination changed');
    throw error;
  }
  if (state.committed) {
    return {
      kind: 'done',
      outcome: {
        action: 'copied',
        bytes: state.result.size,
        conflict: fanOut.conflict,
        transfer: state.result.transfer,
        decisions: 1,
      },
    };
  }
  const progress = state.staged > fanOut.staged;
  let quiet = progress ? 0 : fanOut.quiet + 1;
  let reissued = progress ? 0 : fanOut.reissued;
  const messages: OutgoingMessage[] = [];
  const waiting = `${state.missing.length} of ${fanOut.parts} parts missing`;
  if (quiet >= (timing.quietChecks ?? FAN_OUT_QUIET_CHECKS)) {
    if (reissued >= (timing.maxReissues ?? FAN_OUT_MAX_REISSUES)) {
      const error = `the ranges of the missing parts were sent ${reissued} times without a new part staged (${waiting})`;
      await dependencies.deadLetter(JSON.stringify({ ...task, fanOut }), {
        reason: 'no-progress',
        error,
      });
      return { kind: 'dead-lettered', error };
    }
    const groups = new Set(
      state.missing.map((partNumber) => Math.floor((partNumber - 1) / fanOut.rangeParts)),
    );
    messages.push(
      ...rangeMessages(task, fanOut.upload, fanOut.parts, fanOut.rangeParts, [...groups].sort()),
    );
    dependencies.log?.(
      `${context.destination.describe(task.destinationKey)}: no new part in ${quiet} checks; sending ${groups.size} range tasks again`,
    );
    reissued += 1;
    quiet = 0;
  }
  const checks = fanOut.checks + 1;
  const maxChecks = timing.maxChecks ?? FAN_OUT_MAX_CHECKS;
  if (checks >= maxChecks) {
    const error = `the finishing task checked ${checks} times, the most allowed (${waiting})`;
    await dependencies.deadLetter(JSON.stringify({ ...task, fanOut }), {
      reason: 'too-many-continuations',
      error,
    });
    return { kind: 'dead-lettered', error };
  }
  const next: FinishMessage = { ...fanOut, checks, staged: state.staged, quiet, reissued };
  // The finishing task first: if the ranges fail to send, it sends them again later.
  await dependencies.send([messageOf(task, next, checkDelay(checks, timing)), ...messages]);
  return { kind: 'continued', detail: `waiting: ${waiting}` };
}
