import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { handleWebhook } from '../src/events/webhook.ts';
import { sendAll } from '../src/queue/sqs.ts';
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
