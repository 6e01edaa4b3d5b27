import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { handleWebhook } from '../src/events/webhook.ts';
import { sendAll, sendToDeadLetter } from '../src/queue/sqs.ts';
import { httpResultOf, webhookRequestOf } from '../src/runtime/http.ts';
import { getRuntime, processTelemetry, type Runtime } from '../src/runtime/runtime.ts';

/** The Event Grid webhook (HTTP API): handshakes, authentication, events to the events queue. */
export function createEventGridHandler(runtime: () => Promise<Runtime>) {
  return async (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> => {
    const built = await runtime();
    const response = await handleWebhook(webhookRequestOf(event), {
      auth: await built.webhookAuth(),
      enqueue: (_events, items) =>
        sendAll(
          built.sqs,
          built.queueUrl('events'),
          items.map((item) => ({ body: JSON.stringify(item) })),
        ),
      deadLetter: async (malformed) => {
        const deadLetterQueueUrl = built.queueUrl('eventsDeadLetter');
        const sourceQueue = built.queueUrl('events');
        // As the plan function dead-letters a queued event that does not parse; these never
        // reached the events queue, so they were received 0 times. Ten at a time: a batch
        // holds up to 5,000 events.
        for (let start = 0; start < malformed.length; start += 10) {
          await Promise.all(
            malformed.slice(start, start + 10).map(({ item, error }) =>
              sendToDeadLetter(built.sqs, deadLetterQueueUrl, JSON.stringify(item), {
                reason: 'malformed-event',
                error: error.message,
                receiveCount: 0,
                sourceQueue,
              }),
            ),
          );
        }
        for (const { error } of malformed) {
          built.telemetry.logger.error('event dead-lettered: it does not parse', {
            error: error.message,
          });
        }
      },
      countIgnored: (types) => built.telemetry.ignored(types),
      countReplicas: (events) => built.telemetry.replicaEvents(events),
    });
    if (response.status >= 400) {
      built.telemetry.logger.warn('webhook request refused', {
        status: response.status,
        body: response.body,
      });
    }
    return httpResultOf(response);
  };
}

export const handler = middy(createEventGridHandler(getRuntime))
  .use(injectLambdaContext(processTelemetry.logger))
  .use(logMetrics(processTelemetry.metrics));
