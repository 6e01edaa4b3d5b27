import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { functionMemoryBudget } from '../src/core/memory-plan.ts';
import { processTaskRecord, TimeBudgetExceededError } from '../src/queue/task-record.ts';
import {
  COPY_MEMORY_MB,
  COPY_STOP_MARGIN_SECONDS,
  COPY_TIMEOUT_SECONDS,
} from '../src/queue/timing.ts';
import * as ruleStores from '../src/runtime/rule-stores.ts';
import {
  getRuntime,
  processTelemetry,
  provideRuleStores,
  type Runtime,
  taskStoresOf,
} from '../src/runtime/runtime.ts';
import type { Side } from '../src/stores/object-store.ts';

// Every task uses a rule's stores: their SDKs load with the function (in Lambda's init phase),
// not in the first task.
provideRuleStores(ruleStores);

/** The tasks queue's consumer: one copy or delete per record, failures reported per record. */
export function createCopyHandler(runtime: () => Promise<Runtime>) {
  return async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
    const built = await runtime();
    const dependencies = {
      sqs: built.sqs,
      queueUrl: built.queueUrl('tasks'),
      deadLetterQueueUrl: built.queueUrl('tasksDeadLetter'),
      rules: built.config.rules,
      storesFor: (rule: Parameters<Runtime['storesOf']>[0], task: { sourceSide: Side }) =>
        taskStoresOf(built, rule, task.sourceSide),
      pullMemory: built.pullMemory,
      telemetry: built.telemetry,
      retryBaseSeconds: built.retryBaseSeconds,
      maxReceives: built.maxReceives,
      deleteHoldSeconds: built.deleteHoldSeconds,
      // The records of a batch copy side by side, each within its share of the memory.
      memoryBudget: functionMemoryBudget(process.env, event.Records.length, COPY_MEMORY_MB),
    };
    // Copies stop starting new ranges before Lambda would kill them and continue in a new
    // invocation from their staged parts (see src/queue/timing.ts).
    const budget = new AbortController();
    const remaining = context.getRemainingTimeInMillis?.() ?? COPY_TIMEOUT_SECONDS * 1000;
    const timer = setTimeout(
      () => budget.abort(new TimeBudgetExceededError()),
      Math.max(0, remaining - COPY_STOP_MARGIN_SECONDS * 1000),
    );
    try {
      return await processPartialResponse(
        event,
        (record: SQSRecord) => processTaskRecord(record, dependencies, budget.signal),
        new BatchProcessor(EventType.SQS),
        { context },
      );
    } finally {
      clearTimeout(timer);
    }
  };
}

export const handler = middy(createCopyHandler(getRuntime))
  .use(injectLambdaContext(processTelemetry.logger))
  .use(logMetrics(processTelemetry.metrics));
