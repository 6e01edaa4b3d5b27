import { ChangeMessageVisibilityCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import * as z from 'zod';
import type { ReplicationRule } from '../config/schema.ts';
import type { PullMemory } from '../copy/pull-memory.ts';
import { runCopyTask, type TaskOutcome } from '../copy/run-task.ts';
import type { CopyTask } from '../core/route.ts';
import {
  asReplicatorError,
  CredentialRefusedError,
  PermanentError,
  RetryableError,
} from '../errors.ts';
import type { Telemetry } from '../observe/telemetry.ts';
import type { ObjectStore } from '../stores/object-store.ts';
import { sendAll, sendToDeadLetter } from './sqs.ts';
import { MAX_RECEIVES, retryDelaySeconds } from './timing.ts';

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
});

/** Parses a task message body; anything else is permanent (it will never parse). */
export function parseCopyTask(body: string): CopyTask {
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
  const { sequencer, writtenBy, etag, ...rest } = result.data;
  return {
    ...rest,
    ...(sequencer !== undefined && { sequencer }),
    ...(writtenBy !== undefined && { writtenBy }),
    ...(etag !== undefined && { etag }),
  };
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
}

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
 * a TimeBudgetExceededError) is sent to the queue again, where the next run goes on from the
 * staged parts. Any other failure delays the message's next receive (exponential in the
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
  try {
    const parsed = parseCopyTask(record.body);
    task = parsed;
    const rule = dependencies.rules.find((candidate) => candidate.name === parsed.rule);
    if (!rule)
      throw new PermanentError(
        `the task names rule "${task.rule}", which the configuration does not have`,
      );
    const copy = (stores: TaskStores) =>
      runCopyTask(parsed, {
        rule,
        source: stores.source,
        destination: stores.destination,
        ...(dependencies.pullMemory && { pullMemory: dependencies.pullMemory }),
        ...(signal && { signal }),
        ...(telemetry && {
          log: (message: string) =>
            telemetry.logger.info(message, { correlationId: parsed.correlationId }),
        }),
      });
    const stores = await dependencies.storesFor(rule, task);
    let outcome: TaskOutcome;
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
    telemetry?.taskDone(task, outcome);
    return outcome;
  } catch (raw) {
    if (task && signal?.aborted && signal.reason instanceof TimeBudgetExceededError) {
      await sendAll(dependencies.sqs, dependencies.queueUrl, [{ body: record.body }]);
      telemetry?.taskContinued(task);
      return 'continued';
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
