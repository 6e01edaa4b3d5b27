import { ChangeMessageVisibilityCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import * as z from 'zod';
import type { ReplicationRule } from '../config/schema.ts';
import { type CopyCheckpoint, CopyStoppedError } from '../copy/copy-object.ts';
import type { PullMemory } from '../copy/pull-memory.ts';
import { runCopyTask, type TaskContext, type TaskOutcome } from '../copy/run-task.ts';
import type { CopyTask } from '../core/route.ts';
import {
  asReplicatorError,
  CredentialRefusedError,
  PermanentError,
  RetryableError,
} from '../errors.ts';
import type { Telemetry } from '../observe/telemetry.ts';
import type { ObjectStore } from '../stores/object-store.ts';
import {
  type FanOut,
  type FanOutDependencies,
  type FanOutResult,
  type FanOutTiming,
  fanOutHook,
  fanOutSchema,
  runFinishTask,
  runRangeTask,
} from './fan-out.ts';
import { sendAll, sendToDeadLetter } from './sqs.ts';
import {
  DELETE_HOLD_SECONDS,
  MAX_CONTINUATIONS,
  MAX_RECEIVES,
  retryDelaySeconds,
} from './timing.ts';

const continuationSchema = z.strictObject({
  count: z.number().int().min(1),
  upload: z
    .strictObject({
      id: z.string().min(1),
      partSize: z.number().int().positive(),
      sourceEtag: z.string().min(1),
      sourceVersionId: z.string().min(1).optional(),
      sourceSize: z.number().int().nonnegative(),
      partsDone: z.number().int().nonnegative(),
      checksums: z.base64(),
    })
    .optional(),
});

/** A delete held in doubt (see `decide`): the destination version it waits on, and since when. */
const holdSchema = z.strictObject({
  etag: z.string().min(1),
  since: z.iso.datetime(),
});

const copyTaskSchema = z.strictObject({
  rule: z.string().min(1),
  kind: z.enum(['created', 'deleted']),
  sourceSide: z.enum(['s3', 'azure']),
  sourceContainer: z.string().min(1),
  sourceKey: z.string().min(1),
  destinationContainer: z.string().min(1),
  destinationKey: z.string().min(1),
  sequencer: z.string().optional(),
  eventTime: z.string(),
  correlationId: z.string(),
  writtenBy: z.literal('user').optional(),
  etag: z.string().min(1).optional(),
  size: z.number().int().nonnegative().optional(),
  continuation: continuationSchema.optional(),
  fanOut: fanOutSchema.optional(),
  hold: holdSchema.optional(),
});

/** How far a task stopped by its time budget got: carried by the message that continues it. */
export interface Continuation {
  /** Times the task has been continued, this message included. */
  count: number;
  /** What the stopped copy left staged, when it staged anything. */
  checkpoint?: CopyCheckpoint;
}

/** A task message: the task, and where it stopped when it is a continuation. */
export interface TaskMessage {
  task: CopyTask;
  continuation?: Continuation;
  /** Present on the range and finishing tasks of a fanned-out copy. */
  fanOut?: FanOut;
  /** Present on a delete held in doubt (see `decide`). */
  hold?: { etag: string; since: string };
}

/** Parses a task message body; anything else is permanent (it will never parse). */
export function parseCopyTask(body: string): CopyTask {
  return parseTaskMessage(body).task;
}

/** Parses a task message body with its continuation; anything else is permanent. */
export function parseTaskMessage(body: string): TaskMessage {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    throw new PermanentError('the task message is not valid JSON', { cause: error });
  }
  const result = copyTaskSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new PermanentError(
      `the task message is not a copy task: ${issue?.path.join('.') || '(top level)'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const { sequencer, writtenBy, etag, size, continuation, fanOut, hold, ...rest } = result.data;
  const task: CopyTask = {
    ...rest,
    ...(sequencer !== undefined && { sequencer }),
    ...(writtenBy !== undefined && { writtenBy }),
    ...(etag !== undefined && { etag }),
    ...(size !== undefined && { size }),
  };
  if (fanOut?.role === 'range' && fanOut.last < fanOut.first) {
    throw new PermanentError(
      `the task message is not a copy task: fanOut: parts ${fanOut.first}-${fanOut.last} are no range`,
    );
  }
  if (!continuation) return { task, ...(fanOut && { fanOut }), ...(hold && { hold }) };
  const { upload } = continuation;
  return {
    task,
    ...(fanOut && { fanOut }),
    ...(hold && { hold }),
    continuation: {
      count: continuation.count,
      ...(upload && {
        checkpoint: {
          uploadId: upload.id,
          partSize: upload.partSize,
          sourceEtag: upload.sourceEtag,
          ...(upload.sourceVersionId !== undefined && { sourceVersionId: upload.sourceVersionId }),
          sourceSize: upload.sourceSize,
          parts: unpackChecksums(upload.checksums),
        },
      }),
    },
  };
}

/**
 * The message body that continues `body` from `continuation`. Checksums are packed, 8 bytes a
 * part (part number, CRC32; big-endian) in base64, so that S3's 10,000 parts take about 107 KB
 * of the 256 KiB an SQS message can hold. Parts without one (Azure blocks) are only counted.
 */
export function continuationBody(body: string, continuation: Continuation): string {
  const { checkpoint } = continuation;
  const withChecksum = checkpoint?.parts.filter((part) => part.checksum !== undefined) ?? [];
  const packed = Buffer.alloc(8 * withChecksum.length);
  withChecksum.forEach((part, index) => {
    packed.writeUInt32BE(part.partNumber, 8 * index);
    Buffer.from(part.checksum ?? '', 'base64').copy(packed, 8 * index + 4, 0, 4);
  });
  return JSON.stringify({
    ...(JSON.parse(body) as Record<string, unknown>),
    continuation: {
      count: continuation.count,
      ...(checkpoint && {
        upload: {
          id: checkpoint.uploadId,
          partSize: checkpoint.partSize,
          sourceEtag: checkpoint.sourceEtag,
          ...(checkpoint.sourceVersionId !== undefined && {
            sourceVersionId: checkpoint.sourceVersionId,
          }),
          sourceSize: checkpoint.sourceSize,
          partsDone: checkpoint.parts.length,
          checksums: packed.toString('base64'),
        },
      }),
    },
  });
}

function unpackChecksums(packed: string): CopyCheckpoint['parts'] {
  const bytes = Buffer.from(packed, 'base64');
  const parts: CopyCheckpoint['parts'] = [];
  for (let offset = 0; offset + 8 <= bytes.length; offset += 8) {
    parts.push({
      partNumber: bytes.readUInt32BE(offset),
      checksum: bytes.subarray(offset + 4, offset + 8).toString('base64'),
    });
  }
  return parts;
}

/** The two stores of a task, and how to renew their credential. */
export interface TaskStores {
  source: ObjectStore;
  destination: ObjectStore;
  /**
   * After a store refused its credential: resolves true when the credential has changed since
   * (a rotated secret), so `storesFor` now gives stores worth one more try.
   */
  renewCredential?(): Promise<boolean>;
}

/** What processing a task record needs, built once per cold start by the composition root. */
export interface TaskRecordDependencies {
  sqs: SQSClient;
  deadLetterQueueUrl: string;
  /** The work queue's URL: for ChangeMessageVisibility, continuations, and `sourceQueue`. */
  queueUrl: string;
  rules: ReplicationRule[];
  /** Stores for a rule's side and container. */
  storesFor(rule: ReplicationRule, task: CopyTask): TaskStores | Promise<TaskStores>;
  pullMemory?: PullMemory;
  telemetry?: Telemetry;
  /** Seconds before the first retry; doubles with each receive (default RETRY_BASE_SECONDS). */
  retryBaseSeconds?: number;
  /**
   * The work queue's maxReceiveCount (default MAX_RECEIVES). A task that fails on its last
   * receive is dead-lettered here, with its last error as the reason; the queue's own
   * redrive policy is only the backstop for invocations that crash or time out.
   */
  maxReceives?: number;
  /** Most continuations of one task (default MAX_CONTINUATIONS); see `processTaskRecord`. */
  maxContinuations?: number;
  /** Bytes each copy may hold at once (its share of the function's memory); default unchecked. */
  memoryBudget?: number;
  /** How a fanned-out copy's finishing task checks (tests shorten it); see src/queue/fan-out.ts. */
  fanOutTiming?: FanOutTiming;
  /** How long a delete in doubt waits (default DELETE_HOLD_SECONDS; at most 900, SQS's delay). */
  deleteHoldSeconds?: number;
}

/** Milliseconds since a hold began (negative when `since` is in the future). */
const heldFor = (since: string) => Date.now() - Date.parse(since);

/** SQS delays a message at most 15 minutes. */
const MAX_DELAY_SECONDS = 900;
/** A delayed message may be received a little early; a hold this close to its end is over. */
const HOLD_EARLY_MS = 1000;

/** The reason a copy's signal fires when its invocation nears the end of its time budget. */
export class TimeBudgetExceededError extends RetryableError {
  constructor() {
    super('the invocation reached its time budget');
    this.name = 'TimeBudgetExceededError';
  }
}

/**
 * Processes one SQS record of the tasks queue. Resolves when the task is done or its outcome
 * decided (skip with a reason), and also when a permanent failure has been moved to the
 * dead-letter queue with its reason. A copy stopped by the time budget (`signal` aborted with
 * a TimeBudgetExceededError) is sent to the queue again with a `continuation` (its count, and
 * the staged upload with the checksums of its parts), where the next run goes on from the
 * staged parts. A continuation that staged no new part (`no-progress`), or a stop that would
 * exceed `maxContinuations` (`too-many-continuations`), goes to the dead-letter queue instead,
 * its staged parts kept in the body for a redrive to go on from. Any other failure delays the message's next receive (exponential in the
 * receive count) and rethrows, so the record is reported as a batch item failure and retried
 * alone; after the queue's maxReceiveCount SQS dead-letters it.
 */
export async function processTaskRecord(
  record: SQSRecord,
  dependencies: TaskRecordDependencies,
  signal?: AbortSignal,
): Promise<TaskOutcome | 'dead-lettered' | 'continued'> {
  const receiveCount = Number(record.attributes.ApproximateReceiveCount ?? '1');
  const telemetry = dependencies.telemetry;
  let task: CopyTask | undefined;
  let continuation: Continuation | undefined;
  try {
    const message = parseTaskMessage(record.body);
    const parsed = message.task;
    task = parsed;
    continuation = message.continuation;
    const resume = continuation?.checkpoint;
    const rule = dependencies.rules.find((candidate) => candidate.name === parsed.rule);
    if (!rule)
      throw new PermanentError(
        `the task names rule "${task.rule}", which the configuration does not have`,
      );
    const log = (message: string) =>
      telemetry?.logger.info(message, { correlationId: parsed.correlationId });
    const { hold } = message;
    const holdSeconds = dependencies.deleteHoldSeconds ?? DELETE_HOLD_SECONDS;
    const fanOutDependencies: FanOutDependencies = {
      send: (messages) => sendAll(dependencies.sqs, dependencies.queueUrl, messages),
      deadLetter: (body, reason) =>
        sendToDeadLetter(dependencies.sqs, dependencies.deadLetterQueueUrl, body, {
          ...reason,
          receiveCount,
          sourceQueue: dependencies.queueUrl,
        }),
      ...(dependencies.fanOutTiming && { timing: dependencies.fanOutTiming }),
      log,
    };
    const copy = async (stores: TaskStores): Promise<TaskOutcome | FanOutResult> => {
      const context: TaskContext = {
        rule,
        source: stores.source,
        destination: stores.destination,
        ...(dependencies.pullMemory && { pullMemory: dependencies.pullMemory }),
        ...(signal && { signal }),
        ...(resume && { resume }),
        keepStagedOnStop: true,
        ...(dependencies.memoryBudget !== undefined && {
          memoryBudget: dependencies.memoryBudget,
        }),
        ...(telemetry && { log }),
        ...(hold && {
          held: {
            etag: hold.etag,
            over: heldFor(hold.since) >= holdSeconds * 1000 - HOLD_EARLY_MS,
          },
        }),
      };
      context.fanOut = fanOutHook(parsed, context, fanOutDependencies);
      const { fanOut } = message;
      if (fanOut?.role === 'range') return runRangeTask(parsed, fanOut, context, resume);
      if (fanOut?.role === 'finish') {
        return runFinishTask(parsed, fanOut, context, fanOutDependencies);
      }
      let outcome = await runCopyTask(parsed, context);
      if (outcome.action === 'held' && holdSeconds === 0) {
        // No hold configured: decide at once as if it were over.
        outcome = await runCopyTask(parsed, {
          ...context,
          held: { etag: outcome.etag, over: true },
        });
      }
      if (outcome.action === 'held') {
        // The hold runs from the first time this version was held on (never from the future:
        // a clock ahead, or an edited body, must not hold it for ever).
        const since =
          hold?.etag === outcome.etag && heldFor(hold.since) >= 0
            ? hold.since
            : new Date().toISOString();
        const wait = Math.min(
          MAX_DELAY_SECONDS,
          Math.max(1, Math.ceil(holdSeconds - heldFor(since) / 1000)),
        );
        // A continuation's upload was given up when the task was decided a delete.
        const { continuation: _dropped, ...body } = JSON.parse(record.body) as Record<
          string,
          unknown
        >;
        await sendAll(dependencies.sqs, dependencies.queueUrl, [
          {
            body: JSON.stringify({ ...body, hold: { etag: outcome.etag, since } }),
            delaySeconds: wait,
          },
        ]);
        return { kind: 'continued', detail: `${outcome.detail} (next look in ${wait} s)` };
      }
      return outcome.action === 'fanned-out'
        ? {
            kind: 'continued',
            detail: `split into ${outcome.ranges} range tasks and a finishing task`,
          }
        : outcome;
    };
    const stores = await dependencies.storesFor(rule, task);
    let outcome: TaskOutcome | FanOutResult;
    try {
      outcome = await copy(stores);
    } catch (error) {
      // A rotated key, SAS or client secret: read once more, and try once more with it.
      if (!(error instanceof CredentialRefusedError) || !(await stores.renewCredential?.())) {
        throw error;
      }
      telemetry?.logger.info('the Azure credential was refused; trying the renewed secret', {
        correlationId: task.correlationId,
      });
      outcome = await copy(await dependencies.storesFor(rule, task));
    }
    if ('kind' in outcome) {
      if (outcome.kind === 'continued') {
        telemetry?.taskContinued(task, outcome.detail);
        return 'continued';
      }
      if (outcome.kind === 'dead-lettered') {
        telemetry?.taskFailed(task, 'retryable', outcome.error, true, receiveCount);
        return 'dead-lettered';
      }
      outcome = outcome.outcome;
    }
    telemetry?.taskDone(task, outcome);
    return outcome;
  } catch (raw) {
    if (task && signal?.aborted && signal.reason instanceof TimeBudgetExceededError) {
      return continueTask(record, dependencies, task, continuation, raw, receiveCount);
    }
    const error = asReplicatorError(raw);
    // Errors no retry fixes go to the dead-letter queue at once; others on the last receive.
    const deadLetter =
      error.kind === 'permanent' || error.kind === 'not-found'
        ? { reason: error.kind, error: error.message }
        : receiveCount >= (dependencies.maxReceives ?? MAX_RECEIVES)
          ? { reason: 'retries-exhausted', error: `${error.kind}: ${error.message}` }
          : undefined;
    if (deadLetter) {
      await sendToDeadLetter(dependencies.sqs, dependencies.deadLetterQueueUrl, record.body, {
        ...deadLetter,
        receiveCount,
        sourceQueue: dependencies.queueUrl,
      });
      telemetry?.taskFailed(task, error.kind, error.message, true, receiveCount);
      return 'dead-lettered';
    }
    await dependencies.sqs
      .send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: dependencies.queueUrl,
          ReceiptHandle: record.receiptHandle,
          VisibilityTimeout: retryDelaySeconds(receiveCount, dependencies.retryBaseSeconds),
        }),
      )
      // The failure is what matters; a lost backoff only makes the retry come sooner.
      .catch(() => undefined);
    telemetry?.taskFailed(task, error.kind, error.message, false, receiveCount);
    throw error;
  }
}

/**
 * Sends a task stopped by its time budget to the queue again, from where it stopped; or to the
 * dead-letter queue when it is stuck. A stop before the copy staged anything keeps the
 * checkpoint the message came with.
 */
async function continueTask(
  record: SQSRecord,
  dependencies: TaskRecordDependencies,
  task: CopyTask,
  continuation: Continuation | undefined,
  raw: unknown,
  receiveCount: number,
): Promise<'continued' | 'dead-lettered'> {
  const stopped = stoppedIn(raw);
  const checkpoint = stopped?.checkpoint ?? continuation?.checkpoint;
  const next: Continuation = {
    count: (continuation?.count ?? 0) + 1,
    ...(checkpoint && { checkpoint }),
  };
  const body = continuationBody(record.body, next);
  const limit = dependencies.maxContinuations ?? MAX_CONTINUATIONS;
  const staged = `${checkpoint?.parts.length ?? 0} parts staged`;
  // The first run may have been started late in its invocation; a continuation had a whole one.
  const stuck =
    continuation && (stopped?.partsSent ?? 0) === 0
      ? {
          reason: 'no-progress',
          error: `continuation ${continuation.count} staged no new part in a whole invocation (${staged})`,
        }
      : next.count > limit
        ? {
            reason: 'too-many-continuations',
            error: `the copy reached its time budget ${next.count} times, more than the ${limit} continuations allowed (${staged})`,
          }
        : undefined;
  if (stuck) {
    await sendToDeadLetter(dependencies.sqs, dependencies.deadLetterQueueUrl, body, {
      ...stuck,
      receiveCount,
      sourceQueue: dependencies.queueUrl,
    });
    dependencies.telemetry?.taskFailed(task, 'retryable', stuck.error, true, receiveCount);
    return 'dead-lettered';
  }
  await sendAll(dependencies.sqs, dependencies.queueUrl, [{ body }]);
  dependencies.telemetry?.taskContinued(task);
  return 'continued';
}

function stoppedIn(error: unknown): CopyStoppedError | undefined {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; depth++) {
    if (cause instanceof CopyStoppedError) return cause;
    cause = cause.cause;
  }
  return undefined;
}
