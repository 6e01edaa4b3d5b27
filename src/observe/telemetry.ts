import type { Logger } from '@aws-lambda-powertools/logger';
import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { TaskOutcome } from '../copy/run-task.ts';
import { DIFFERENCE_KEPT } from '../core/decide.ts';
import type { CopyTask } from '../core/route.ts';
import type { ErrorKind } from '../errors.ts';
import type { ObjectEvent } from '../events/object-event.ts';

/** What became of one task, as reported to listeners (the local mirror's output, tests). */
export type TaskReport =
  | { task: CopyTask; result: 'done'; outcome: TaskOutcome; latencyMs: number }
  | { task: CopyTask; result: 'continued'; detail: string }
  | {
      task: CopyTask | undefined;
      result: 'failed';
      errorKind: ErrorKind;
      error: string;
      deadLettered: boolean;
    };

/** The `direction` dimension of a copy, by the side it copied from. */
export const DIRECTIONS: Record<CopyTask['sourceSide'], 's3-to-azure' | 'azure-to-s3'> = {
  s3: 's3-to-azure',
  azure: 'azure-to-s3',
};

/**
 * Logs and metrics of the pipeline in one place. Logs are Powertools JSON lines that carry the
 * event's correlation id from the notification through the task to the copy; metrics are EMF
 * (CloudWatch): objects and bytes replicated (in total, and by direction), replication latency
 * from event time to commit, skips by reason, failures by class. Counters are also kept in memory for `s3az local`.
 */
export class Telemetry {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly #counters = new Map<string, number>();
  readonly #listeners = new Set<(report: TaskReport) => void>();
  readonly #singles = new Map<string, Metrics>();

  constructor(logger: Logger, metrics: Metrics) {
    this.logger = logger;
    this.metrics = metrics;
  }

  /** Calls `listener` after every task; returns the function that stops it. */
  onTask(listener: (report: TaskReport) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The in-memory counters (`copied`, `skipped.replica`, `failed.retryable`, …). */
  counters(): Record<string, number> {
    return Object.fromEntries(this.#counters);
  }

  #count(name: string, by = 1): void {
    this.#counters.set(name, (this.#counters.get(name) ?? 0) + by);
  }

  #dimensioned(
    metric: string,
    dimension: string,
    value: string,
    count = 1,
    unit: (typeof MetricUnit)[keyof typeof MetricUnit] = MetricUnit.Count,
  ): void {
    // One single-metric publisher per dimension, reused: each publish clears what it added, and
    // making a new one per metric (as singleMetric() does) cost the local mirror 4% of its CPU.
    let single = this.#singles.get(dimension);
    if (!single) {
      single = this.metrics.singleMetric();
      this.#singles.set(dimension, single);
    }
    single.addDimension(dimension, value);
    single.addMetric(metric, unit, count);
  }

  #emit(report: TaskReport): void {
    for (const listener of this.#listeners) listener(report);
  }

  /** A task finished: copied, deleted, or skipped with its reason. */
  taskDone(task: CopyTask, outcome: TaskOutcome, now = Date.now()): void {
    const eventTime = Date.parse(task.eventTime);
    const latencyMs = Number.isFinite(eventTime) ? Math.max(0, now - eventTime) : 0;
    const where = {
      correlationId: task.correlationId,
      rule: task.rule,
      from: task.sourceSide,
      key: task.sourceKey,
      destinationKey: task.destinationKey,
    };
    if (outcome.action === 'copied') {
      this.#count('copied');
      this.#count('bytes', outcome.bytes);
      this.metrics.addMetric('ObjectsReplicated', MetricUnit.Count, 1);
      this.metrics.addMetric('BytesReplicated', MetricUnit.Bytes, outcome.bytes);
      this.metrics.addMetric('ReplicationLatency', MetricUnit.Milliseconds, latencyMs);
      // The same two metrics again, by direction (the totals above keep their dimensions).
      const direction = DIRECTIONS[task.sourceSide];
      this.#dimensioned('ObjectsReplicated', 'direction', direction);
      this.#dimensioned('BytesReplicated', 'direction', direction, outcome.bytes, MetricUnit.Bytes);
      if (outcome.conflict) {
        this.#count('conflicts');
        this.metrics.addMetric('Conflicts', MetricUnit.Count, 1);
        this.logger.warn('conflict: both sides changed; the newer write wins', where);
      }
      this.logger.info('copied', { ...where, ...outcome, latencyMs });
    } else if (outcome.action === 'deleted') {
      this.#count('deleted');
      this.metrics.addMetric('ObjectsDeleted', MetricUnit.Count, 1);
      this.metrics.addMetric('ReplicationLatency', MetricUnit.Milliseconds, latencyMs);
      this.logger.info('deleted', { ...where, latencyMs });
    } else {
      this.#count(`skipped.${outcome.reason}`);
      this.#dimensioned('Skipped', 'reason', outcome.reason);
      if (DIFFERENCE_KEPT.has(outcome.reason)) {
        // The sides stay different on purpose (the other side's newer write wins): a conflict.
        this.#count('conflicts');
        this.metrics.addMetric('Conflicts', MetricUnit.Count, 1);
        this.logger.warn('conflict: the destination is newer and kept', {
          ...where,
          reason: outcome.reason,
          detail: outcome.detail,
        });
      } else {
        this.logger.info('skipped', { ...where, reason: outcome.reason, detail: outcome.detail });
      }
    }
    this.#emit({ task, result: 'done', outcome, latencyMs });
  }

  /**
   * A copy goes on in other messages: it reached its time budget and was queued again from its
   * staged parts, or it is a fanned-out copy (split, a range staged, its finisher waiting).
   */
  taskContinued(
    task: CopyTask,
    detail = 'time budget reached; continuing in a new invocation',
  ): void {
    this.#count('continued');
    this.metrics.addMetric('TasksContinued', MetricUnit.Count, 1);
    this.logger.info(detail, {
      correlationId: task.correlationId,
      key: task.sourceKey,
    });
    this.#emit({ task, result: 'continued', detail });
  }

  /** A task failed: it will be retried, or it went to the dead-letter queue. */
  taskFailed(
    task: CopyTask | undefined,
    errorKind: ErrorKind,
    error: string,
    deadLettered: boolean,
    receiveCount: number,
  ): void {
    this.#count(`failed.${errorKind}`);
    if (deadLettered) this.#count('dead-lettered');
    this.#dimensioned('Failures', 'class', errorKind);
    const fields = {
      correlationId: task?.correlationId,
      key: task?.sourceKey,
      errorKind,
      error,
      receiveCount,
    };
    if (deadLettered) this.logger.error('task dead-lettered', fields);
    else this.logger.warn('task failed; it will be retried', fields);
    this.#emit({ task, result: 'failed', errorKind, error, deadLettered });
  }

  /** The plan step's counts for one batch. */
  planned(counts: {
    events: number;
    tasks: number;
    unrouted: number;
    ignored: string[];
    deadLettered: number;
  }): void {
    this.#count('events', counts.events);
    this.#count('tasks', counts.tasks);
    this.#count('unrouted', counts.unrouted);
    this.#count('ignored', counts.ignored.length);
    this.metrics.addMetric('EventsReceived', MetricUnit.Count, counts.events);
    this.metrics.addMetric('TasksPlanned', MetricUnit.Count, counts.tasks);
    if (counts.unrouted > 0)
      this.metrics.addMetric('EventsUnrouted', MetricUnit.Count, counts.unrouted);
    for (const type of counts.ignored) this.#dimensioned('EventsIgnored', 'type', type);
    if (counts.deadLettered > 0)
      this.metrics.addMetric('EventsDeadLettered', MetricUnit.Count, counts.deadLettered);
  }

  /**
   * Webhook deliveries: events of the replicator's own writes, skipped without a task (the
   * same count and metric as a task skipped with reason `replica`).
   */
  replicaEvents(events: ObjectEvent[]): void {
    this.#count('skipped.replica', events.length);
    this.#dimensioned('Skipped', 'reason', 'replica', events.length);
    for (const event of events) {
      this.logger.debug('skipped', {
        correlationId: event.id,
        from: event.side,
        key: event.key,
        reason: 'replica',
        detail: "the event is of the replicator's own write",
      });
    }
  }

  /** Webhook deliveries: event types that are understood but not replicated. */
  ignored(types: string[]): void {
    this.#count('ignored', types.length);
    for (const type of types) this.#dimensioned('EventsIgnored', 'type', type);
  }
}
