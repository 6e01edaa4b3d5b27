import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { redrive } from '../src/ops/redrive.ts';
import { parseRedriveRequest } from '../src/ops/redrive-request.ts';
import type { OpsTarget } from '../src/ops/target.ts';
import { getRuntime, processTelemetry, type Runtime } from '../src/runtime/runtime.ts';

/**
 * `serverless invoke -f redrive --data '{"reason":"permanent"}'`: dead letters back to their
 * queues, with the CLI's filters. Answers the summary; stops before the function's timeout
 * (what is left stays in the dead-letter queue, visible again at once).
 */
export function createRedriveHandler(runtime: () => Promise<Runtime>) {
  return async (input: unknown, context?: Context) => {
    const options = parseRedriveRequest(input);
    const built = await runtime();
    const target: OpsTarget = {
      name: context?.functionName ?? 'redrive',
      sqs: built.sqs,
      queues: {
        events: built.queueUrl('events'),
        eventsDeadLetter: built.queueUrl('eventsDeadLetter'),
        tasks: built.queueUrl('tasks'),
        tasksDeadLetter: built.queueUrl('tasksDeadLetter'),
      },
      env: process.env,
    };
    const stop = new AbortController();
    const remaining = context?.getRemainingTimeInMillis?.();
    // Thirty seconds to hand back what it holds before Lambda stops it.
    const timer =
      remaining === undefined
        ? undefined
        : setTimeout(() => stop.abort(), Math.max(0, remaining - 30_000));
    try {
      const result = await redrive(target, { ...options, signal: stop.signal });
      const summary = {
        // Stopped by the time limit: invoke it again for the rest.
        stopped: result.stopped,
        dryRun: result.dryRun,
        matched: result.matched.length,
        moved: result.moved,
        skipped: result.skipped,
        failed: result.failed,
        truncated: result.truncated,
        ...(result.dryRun && {
          wouldMove: result.matched.map((letter) => ({
            id: letter.id,
            queue: letter.queue,
            reason: letter.reason,
            error: letter.error,
            rule: letter.rule,
            key: letter.key,
          })),
        }),
      };
      built.telemetry.logger.info('redrive', { ...summary, wouldMove: undefined });
      return summary;
    } finally {
      clearTimeout(timer);
    }
  };
}

export const handler = middy(createRedriveHandler(getRuntime)).use(
  injectLambdaContext(processTelemetry.logger),
);
