import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { copyInline } from '../src/queue/inline-copy.ts';
import { planBatch } from '../src/queue/plan-batch.ts';
import { PLAN_STOP_MARGIN_SECONDS, PLAN_TIMEOUT_SECONDS } from '../src/queue/timing.ts';
import {
  getRuntime,
  processTelemetry,
  type Runtime,
  taskStoresOf,
} from '../src/runtime/runtime.ts';

/** The events queue's consumer: notifications in, one task per object out. */
export function createPlanHandler(runtime: () => Promise<Runtime>) {
  return async (event: SQSEvent, context?: Context): Promise<SQSBatchResponse> => {
    const built = await runtime();
    // A large directory lists no new page near the end of the invocation and goes on in a
    // follow-up message instead (see src/queue/expand-directory.ts).
    const stop = new AbortController();
    const remaining = context?.getRemainingTimeInMillis?.() ?? PLAN_TIMEOUT_SECONDS * 1000;
    const timer = setTimeout(
      () => stop.abort(),
      Math.max(0, remaining - PLAN_STOP_MARGIN_SECONDS * 1000),
    );
    try {
      return await planBatch(
        event.Records,
        {
          sqs: built.sqs,
          rules: built.config.rules,
          eventsQueueUrl: built.queueUrl('events'),
          eventsDeadLetterQueueUrl: built.queueUrl('eventsDeadLetter'),
          tasksQueueUrl: built.queueUrl('tasks'),
          storesOf: (rule) => built.storesOf(rule),
          ownS3Principals: built.ownS3Principals,
          telemetry: built.telemetry,
          copyInline: (task, signal) =>
            copyInline(
              task,
              {
                rules: built.config.rules,
                storesFor: (rule, from) => taskStoresOf(built, rule, from.sourceSide),
                pullMemory: built.pullMemory,
                telemetry: built.telemetry,
              },
              signal,
            ),
        },
        { stop: stop.signal },
      );
    } finally {
      clearTimeout(timer);
    }
  };
}

export const handler = middy(createPlanHandler(getRuntime))
  .use(injectLambdaContext(processTelemetry.logger))
  .use(logMetrics(processTelemetry.metrics));
