import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { WebhookRequest, WebhookResponse } from '../events/webhook.ts';

/** An API Gateway HTTP API (payload 2.0) request as the webhook sees it. */
export function webhookRequestOf(event: APIGatewayProxyEventV2): WebhookRequest {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(event.headers ?? {})) {
    headers[name.toLowerCase()] = value;
  }
  const body = event.body ?? '';
  return {
    method: event.requestContext?.http?.method ?? 'POST',
    headers,
    query: { ...(event.queryStringParameters ?? {}) },
    body: event.isBase64Encoded ? Buffer.from(body, 'base64').toString('utf8') : body,
  };
}

/** The webhook's answer as an API Gateway HTTP API result. */
export function httpResultOf(response: WebhookResponse): APIGatewayProxyStructuredResultV2 {
  return { statusCode: response.status, headers: response.headers, body: response.body };
}
