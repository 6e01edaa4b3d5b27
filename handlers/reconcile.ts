import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import {
  logDifferences,
  newReconcileState,
  type ReconcileSummary,
  reconcileContinuationMessage,
  runReconcile,
  summarize,
} from '../src/queue/reconcile.ts';
import { parseReconcileRequest } from '../src/queue/reconcile-request.ts';
import { sendAll } from '../src/queue/sqs.ts';
import { PLAN_STOP_MARGIN_SECONDS, RECONCILE_TIMEOUT_SECONDS } from '../src/queue/timing.ts';
import { getRuntime, processTelemetry, type Runtime } from '../src/runtime/runtime.ts';

/** What an invocation answers: the rules finished in it, and whether the run goes on. */
export interface ReconcileResponse extends ReconcileSummary {
  /** `false`: the run goes on in a follow-up message on the events queue (the plan step). */
  done: boolean;
}

/**
 * The `reconcile` function, on its schedule (`{}`: every rule) or invoked by hand
 * (`{"rules":["data"],"dryRun":true}`): lists both sides of each rule and sends one task per
 * difference to the tasks queue. Before its time runs out it passes the run on to the plan step
 * in a follow-up message on the events queue, so any number of objects is reconciled.
 */
export function createReconcileHandler(runtime: () => Promise<Runtime>) {
  return async (input: unknown, context?: Context): Promise<ReconcileResponse> => {
    const built = await runtime();
    const request = parseReconcileRequest(
      input,
      built.config.rules.map((rule) => rule.name),
    );
    const logger = built.telemetry.logger;
    const stop = new AbortController();
    const remaining = context?.getRemainingTimeInMillis?.() ?? RECONCILE_TIMEOUT_SECONDS * 1000;
    const timer = setTimeout(
      () => stop.abort(),
      Math.max(0, remaining - PLAN_STOP_MARGIN_SECONDS * 1000),
    );
    try {
      const run = await runReconcile(
        newReconcileState(request),
        {
          rules: built.config.rules,
          storesOf: (rule) => built.storesOf(rule),
          sqs: built.sqs,
          tasksQueueUrl: built.queueUrl('tasks'),
        },
        {
          stop: stop.signal,
          onDifference: logDifferences((message, fields) => logger.info(message, fields)),
          onRuleDone: (result) => logger.info('reconcile: rule done', { ...result }),
        },
      );
      if (!run.done) {
        await sendAll(built.sqs, built.queueUrl('events'), [
          { body: reconcileContinuationMessage(run.state) },
        ]);
      }
      const summary = summarize(run.state);
      logger.info(run.done ? 'reconcile finished' : 'reconcile goes on in the plan step', {
        ...summary,
      });
      return { ...summary, done: run.done };
    } finally {
      clearTimeout(timer);
    }
  };
}

export const handler = middy(createReconcileHandler(getRuntime)).use(
  injectLambdaContext(processTelemetry.logger),
);
