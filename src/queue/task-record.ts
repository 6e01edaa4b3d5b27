import { ChangeMessageVisibilityCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { z } from 'zod';
import type { ReplicationRule } from '../config/schema.ts';
import type { PullMemory } from '../copy/pull-memory.ts';
import { runCopyTask, type TaskOutcome } from '../copy/run-task.ts';
import type { CopyTask } from '../core/route.ts';
import { asReplicatorError, PermanentError } from '../errors.ts';
import type { ObjectStore } from '../stores/object-store.ts';
import { sendToDeadLetter } from './sqs.ts';
import { retryDelaySeconds } from './timing.ts';

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
  const { sequencer, ...rest } = result.data;
  return { ...rest, ...(sequencer !== undefined && { sequencer }) };
}

/** What processing a task record needs, built once per cold start by the composition root. */
export interface TaskRecordDependencies {
  sqs: SQSClient;
  deadLetterQueueUrl: string;
  /** The work queue's URL, for ChangeMessageVisibility and the dead letter's `sourceQueue`. */
  queueUrl: string;
  rules: ReplicationRule[];
  /** Stores for a rule's side and container. */
  storesFor(
    rule: ReplicationRule,
    task: CopyTask,
  ): { source: ObjectStore; destination: ObjectStore };
  pullMemory?: PullMemory;
  log?: (entry: Record<string, unknown>) => void;
}

/**
 * Processes one SQS record of the tasks queue. Resolves when the task is done or its outcome
 * decided (skip with a reason), and also when a permanent failure has been moved to the
 * dead-letter queue with its reason. Any other failure delays the message's next receive
 * (exponential in the receive count) and rethrows, so the record is reported as a batch item
 * failure and retried alone; after the queue's maxReceiveCount SQS dead-letters it.
 */
export async function processTaskRecord(
  record: SQSRecord,
  dependencies: TaskRecordDependencies,
  signal?: AbortSignal,
): Promise<TaskOutcome | 'dead-lettered'> {
  const receiveCount = Number(record.attributes.ApproximateReceiveCount ?? '1');
  try {
    const task = parseCopyTask(record.body);
    const rule = dependencies.rules.find((candidate) => candidate.name === task.rule);
    if (!rule)
      throw new PermanentError(
        `the task names rule "${task.rule}", which the configuration does not have`,
      );
    const stores = dependencies.storesFor(rule, task);
    const outcome = await runCopyTask(task, {
      rule,
      ...stores,
      ...(dependencies.pullMemory && { pullMemory: dependencies.pullMemory }),
      ...(signal && { signal }),
    });
    dependencies.log?.({ message: 'task done', correlationId: task.correlationId, ...outcome });
    return outcome;
  } catch (raw) {
    const error = asReplicatorError(raw);
    if (error.kind === 'permanent' || error.kind === 'not-found') {
      await sendToDeadLetter(dependencies.sqs, dependencies.deadLetterQueueUrl, record.body, {
        reason: error.kind,
        error: error.message,
        receiveCount,
        sourceQueue: dependencies.queueUrl,
      });
      dependencies.log?.({
        message: 'task dead-lettered',
        reason: error.kind,
        error: error.message,
      });
      return 'dead-lettered';
    }
    await dependencies.sqs
      .send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: dependencies.queueUrl,
          ReceiptHandle: record.receiptHandle,
          VisibilityTimeout: retryDelaySeconds(receiveCount),
        }),
      )
      // The failure is what matters; a lost backoff only makes the retry come sooner.
      .catch(() => undefined);
    dependencies.log?.({ message: 'task failed, will retry', error: error.message, receiveCount });
    throw error;
  }
}
