import type { ReplicationRule } from '../config/schema.ts';
import type { PullMemory } from '../copy/pull-memory.ts';
import { runCopyTask } from '../copy/run-task.ts';
import type { CopyTask } from '../core/route.ts';
import type { Telemetry } from '../observe/telemetry.ts';
import { INLINE_COPY_BYTES } from './plan-batch.ts';
import type { TaskStores } from './task-record.ts';

/** What the plan step needs to copy a small new object itself. */
export interface InlineCopyDependencies {
  rules: ReplicationRule[];
  /** Source and destination of the task's rule and side (see `TaskRecordDependencies`). */
  storesFor(rule: ReplicationRule, task: CopyTask): Promise<TaskStores>;
  pullMemory?: PullMemory;
  telemetry?: Telemetry;
}

/**
 * Runs one small new object's task where it was planned (`PlanDependencies.copyInline`):
 * decides and copies as the copy step does, and reports the outcome as it does, but without
 * the copy step's time budget, continuations, fan-out or credential renewal. Resolves to
 * false, leaving the task to the tasks queue (and its retries, backoff and dead letters), for
 * anything but a copy made or a skip decided: a failure of any kind (a source that grew past
 * `INLINE_COPY_BYTES` included), and what only the copy step does (a held delete).
 */
export async function copyInline(
  task: CopyTask,
  dependencies: InlineCopyDependencies,
  signal?: AbortSignal,
): Promise<boolean> {
  const rule = dependencies.rules.find((candidate) => candidate.name === task.rule);
  if (!rule) return false;
  try {
    const { source, destination } = await dependencies.storesFor(rule, task);
    const outcome = await runCopyTask(task, {
      rule,
      source,
      destination,
      ...(dependencies.pullMemory && { pullMemory: dependencies.pullMemory }),
      ...(signal && { signal }),
      // A source that grew since its event is the copy step's, with its time budget,
      // continuations and fan-out.
      maxSourceBytes: INLINE_COPY_BYTES,
    });
    if (outcome.action !== 'copied' && outcome.action !== 'skipped') return false;
    dependencies.telemetry?.taskDone(task, outcome);
    return true;
  } catch (error) {
    dependencies.telemetry?.logger.debug('small object not copied in the plan step; queued', {
      correlationId: task.correlationId,
      error: error instanceof Error ? error.message : String(error),
    });
    return false;
  }
}
