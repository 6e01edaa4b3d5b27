import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { planBatch } from '../src/queue/plan-batch.ts';
import { getRuntime, processTelemetry, type Runtime } from '../src/runtime/runtime.ts';

/** The events queue's consumer: notifications in, one task per object out. */
export function createPlanHandler(runtime: () => Promise<Runtime>) {
  return async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const built = await runtime();
    return planBatch(event.Records, {
      sqs: built.sqs,
      rules: built.config.rules,
      eventsQueueUrl: built.queueUrl('events'),
      eventsDeadLetterQueueUrl: built.queueUrl('eventsDeadLetter'),
      tasksQueueUrl: built.queueUrl('tasks'),
      storesOf: (rule) => built.storesOf(rule),
      ownS3Principals: built.ownS3Principals,
      telemetry: built.telemetry,
    });
  };
}

export const handler = middy(createPlanHandler(getRuntime))
  .use(injectLambdaContext(processTelemetry.logger))
  .use(logMetrics(processTelemetry.metrics));
