import { getMaxListeners, setMaxListeners } from 'node:events';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSRecord } from 'aws-lambda';
import type { ReplicationRule } from '../config/schema.ts';
import { runPool } from '../copy/pool.ts';
import { SMALL_OBJECT_BYTES } from '../copy/run-task.ts';
import { type CopyTask, collapseKeyOf, isNewer, routeEvents } from '../core/route.ts';
import { asReplicatorError } from '../errors.ts';
import { EventParseError } from '../events/object-event.ts';
import { parseQueuedEvent } from '../events/queued.ts';
import type { Telemetry } from '../observe/telemetry.ts';
import type { ObjectStore } from '../stores/object-store.ts';
import {
  continuationMessage,
  type DirectoryContinuation,
  expandDirectory,
  parseDirectoryContinuation,
} from './expand-directory.ts';
import {
  logDifferences,
  parseReconcileContinuation,
  RECONCILE_SLICE_IN_PLAN_SECONDS,
  type ReconcileState,
  reconcileContinuationMessage,
  runReconcile,
  summarize,
} from './reconcile.ts';
import { sendEach, sendToDeadLetter } from './sqs.ts';

/** What the plan step needs, built once per cold start by the composition root. */
export interface PlanDependencies {
  sqs: SQSClient;
  rules: ReplicationRule[];
  /** The events queue (its URL names the source of a dead letter). */
  eventsQueueUrl: string;
  eventsDeadLetterQueueUrl: string;
  tasksQueueUrl: string;
  /** Both stores of a rule, for expanding ADLS Gen2 directory events by listing. */
  storesOf(rule: ReplicationRule): Promise<{ s3: ObjectStore; azure: ObjectStore }>;
  /** The S3 principals the replicator writes as (see `ProvenanceOptions`). */
  ownS3Principals?: readonly string[];
  telemetry?: Telemetry;
  /** Tasks one message makes of a directory before it goes on in a follow-up message. */
  directoryTasksPerMessage?: number;
  /** Keys per page when listing a directory (default: the store's own). */
  directoryPageSize?: number;
  /**
   * Copies one small new object here and now (see {@link copiesInline}); resolves to whether
   * the task is done (copied, or skipped with its reason). A task it does not finish, for any
   * reason, is sent to the tasks queue like the others, to be retried there.
   */
  copyInline?(task: CopyTask, signal: AbortSignal | undefined): Promise<boolean>;
}

/**
 * New objects up to this size (the size copied through the function in one request) are
 * copied by the plan step itself when it can, instead of through the tasks queue: their GET
 * and PUT cost less than the three queue requests and the queue's hop of a task, and 8 of them
 * at once hold 8 MiB of the function's memory. Larger ones, deletes, and what a directory or a
 * reconcile run plans go through the queue.
 */
export const INLINE_COPY_BYTES = SMALL_OBJECT_BYTES;

/** Small new objects copied at once by one plan invocation. */
const INLINE_CONCURRENCY = 8;

/** Whether the plan step copies `task` itself. */
export function copiesInline(task: CopyTask): boolean {
  return task.kind === 'created' && task.size !== undefined && task.size <= INLINE_COPY_BYTES;
}

/**
 * The plan step for one batch of the events queue: parse each message, route its events
 * through the rules (events no rule covers are counted and dropped), expand directory events
 * by listing, collapse the tasks of one key and kind across the batch to the newest (at most
 * one `created` and one `deleted` task per key: see `collapseKeyOf`), copy the small new
 * objects among them itself (`copyInline`, when given), and send the rest to the tasks queue.
 * A reconcile run's follow-up message goes on with the run
 * (src/queue/reconcile.ts), which sends its own tasks. A message that can never parse goes to the events
 * dead-letter queue with its reason. Returns the records to retry: exactly those whose tasks
 * could not all be planned or stored, so the rest of the batch is not done twice.
 */
export async function planBatch(
  records: SQSRecord[],
  dependencies: PlanDependencies,
  options: { signal?: AbortSignal; stop?: AbortSignal } = {},
): Promise<SQSBatchResponse> {
  const { signal, stop } = options;
  const failed = new Set<string>();
  const newest = new Map<string, { task: CopyTask; records: Set<string> }>();
  // Directories and reconcile runs that go on in a follow-up message, sent once their tasks so
  // far are stored.
  const followUps: Array<{ id: string; body: string }> = [];
  const counts = { events: 0, tasks: 0, unrouted: 0, ignored: [] as string[], deadLettered: 0 };
  const logger = dependencies.telemetry?.logger;

  for (const record of records) {
    const id = record.messageId;
    try {
      let parsed: ReturnType<typeof parseQueuedEvent>;
      let continuation: DirectoryContinuation | undefined;
      let reconcile: ReconcileState | undefined;
      try {
        reconcile = parseReconcileContinuation(record.body);
        continuation = reconcile ? undefined : parseDirectoryContinuation(record.body);
        parsed =
          continuation || reconcile
            ? { events: [], ignored: [] }
            : parseQueuedEvent(
                record.body,
                dependencies.ownS3Principals
                  ? { ownS3Principals: dependencies.ownS3Principals }
                  : {},
              );
      } catch (error) {
        if (!(error instanceof EventParseError)) throw error;
        await sendToDeadLetter(
          dependencies.sqs,
          dependencies.eventsDeadLetterQueueUrl,
          record.body,
          {
            reason: 'malformed-event',
            error: error.message,
            receiveCount: Number(record.attributes.ApproximateReceiveCount ?? '1'),
            sourceQueue: dependencies.eventsQueueUrl,
          },
        );
        counts.deadLettered += 1;
        logger?.error('event dead-lettered: it does not parse', {
          messageId: id,
          error: error.message,
        });
        continue;
      }
      if (reconcile) {
        // A reconcile run goes on here for a while, then in another message, so that the
        // events of this batch do not wait for a whole listing.
        const slice = AbortSignal.timeout(RECONCILE_SLICE_IN_PLAN_SECONDS * 1000);
        const run = await runReconcile(
          reconcile,
          {
            rules: dependencies.rules,
            storesOf: (rule) => dependencies.storesOf(rule),
            sqs: dependencies.sqs,
            tasksQueueUrl: dependencies.tasksQueueUrl,
          },
          {
            ...(signal && { signal }),
            stop: stop ? AbortSignal.any([stop, slice]) : slice,
            ...(logger && {
              onDifference: logDifferences((message, fields) => logger.info(message, fields)),
              onRuleDone: (result) => logger.info('reconcile: rule done', { ...result }),
            }),
          },
        );
        if (run.done) logger?.info('reconcile finished', { ...summarize(run.state) });
        else followUps.push({ id, body: reconcileContinuationMessage(run.state) });
        continue;
      }
      counts.events += parsed.events.length;
      counts.ignored.push(...parsed.ignored);
      // Rule 2: the events of the replicator's own writes and deletes need no task.
      const own = parsed.events.filter((event) => event.writtenBy === 'replicator');
      if (own.length > 0) dependencies.telemetry?.replicaEvents(own);
      const routed = routeEvents(
        dependencies.rules,
        parsed.events.filter((event) => event.writtenBy !== 'replicator'),
      );
      counts.unrouted += routed.unrouted;
      const tasks = [...routed.tasks];
      const directories: DirectoryContinuation[] = routed.directories.map((directory) => ({
        directory,
        from: { phase: directory.kind === 'directory-renamed' ? 'copies' : 'deletes' },
      }));
      if (continuation) directories.push(continuation);
      for (const { directory, from } of directories) {
        const rule = dependencies.rules.find((candidate) => candidate.name === directory.rule);
        if (!rule) continue;
        const expansion = await expandDirectory(
          directory,
          rule,
          await dependencies.storesOf(rule),
          {
            from,
            ...(signal && { signal }),
            ...(stop && { stop }),
            ...(dependencies.directoryTasksPerMessage !== undefined && {
              maxTasks: dependencies.directoryTasksPerMessage,
            }),
            ...(dependencies.directoryPageSize !== undefined && {
              pageSize: dependencies.directoryPageSize,
            }),
          },
        );
        tasks.push(...expansion.tasks);
        if (expansion.next) {
          followUps.push({ id, body: continuationMessage(directory, expansion.next) });
        }
      }
      for (const task of tasks) {
        const key = collapseKeyOf(task);
        const current = newest.get(key);
        if (!current) newest.set(key, { task, records: new Set([id]) });
        else {
          current.records.add(id);
          if (isNewer(task, current.task)) current.task = task;
        }
      }
    } catch (raw) {
      const error = asReplicatorError(raw);
      failed.add(id);
      logger?.warn('event not planned; it will be retried', {
        messageId: id,
        error: error.message,
      });
    }
  }

  // A task that a failed record contributed to is not sent: every record it came from is
  // retried, so that no change is lost with the failed one. (Tasks sent twice are harmless.)
  const planned: Array<{ task: CopyTask; records: Set<string> }> = [];
  for (const entry of newest.values()) {
    if ([...entry.records].some((id) => failed.has(id))) {
      for (const id of entry.records) failed.add(id);
    } else planned.push(entry);
  }
  // Small new objects: copied here, unless the invocation is stopping; what is not done
  // (a failure, a source that grew) goes to the tasks queue with the rest.
  const copyInline = dependencies.copyInline;
  const inline = copyInline ? planned.filter((entry) => copiesInline(entry.task)) : [];
  const done = new Set<(typeof planned)[number]>();
  if (copyInline && inline.length > 0) {
    // Copies under way stop with the invocation's stop too, and go to the queue.
    const halt = stop && signal ? AbortSignal.any([signal, stop]) : (stop ?? signal);
    // Every request of every copy in flight listens on it (and the AWS SDK once more on each
    // failed request, a 404 included): more than Node's default of 10 is expected.
    if (halt) setMaxListeners(Math.max(getMaxListeners(halt), INLINE_CONCURRENCY * 4), halt);
    await runPool(inline, INLINE_CONCURRENCY, async (entry) => {
      if (stop?.aborted) return;
      try {
        if (await copyInline(entry.task, halt)) done.add(entry);
      } catch {
        // Not done here: queued below.
      }
    });
  }
  const queued = planned.filter((entry) => !done.has(entry));
  const { failed: unsent } = await sendEach(
    dependencies.sqs,
    dependencies.tasksQueueUrl,
    queued.map((entry) => ({ body: JSON.stringify(entry.task) })),
    signal,
  );
  for (const [index, why] of unsent) {
    const entry = queued[index];
    if (!entry) continue;
    for (const id of entry.records) failed.add(id);
    logger?.warn('task not stored; its events will be retried', {
      correlationId: entry.task.correlationId,
      error: why.reason,
    });
  }
  // A directory goes on only after the tasks of its pages so far are stored; a follow-up that
  // is not stored retries its record, whose tasks are then sent twice (harmless).
  const continuing = followUps.filter((followUp) => !failed.has(followUp.id));
  const { failed: notContinued } = await sendEach(
    dependencies.sqs,
    dependencies.eventsQueueUrl,
    continuing.map((followUp) => ({ body: followUp.body })),
    signal,
  );
  for (const [index, why] of notContinued) {
    const followUp = continuing[index];
    if (!followUp) continue;
    failed.add(followUp.id);
    logger?.warn('directory follow-up not stored; its event will be retried', {
      messageId: followUp.id,
      error: why.reason,
    });
  }
  if (continuing.length > notContinued.size) {
    logger?.info('directories go on in follow-up messages', {
      count: continuing.length - notContinued.size,
    });
  }
  counts.tasks = planned.length - unsent.size;
  dependencies.telemetry?.planned(counts);
  return { batchItemFailures: [...failed].map((itemIdentifier) => ({ itemIdentifier })) };
}
