import { authenticateDelivery, type DeliveryAuth } from '../auth/event-grid-auth.ts';
import { type MalformedEvent, parseEachEventGridEvent } from './event-grid.ts';
import { EventParseError, type ObjectEvent } from './object-event.ts';

/** Event Grid posts at most 1 MiB per delivery; anything larger is not from it. */
export const MAX_BODY_BYTES = 1024 * 1024;

/**
 * Event Grid's events nest a few levels (an array, the event, `data`, a field's object); a
 * body nested deeper than this is no delivery of theirs, and storing it would overflow the
 * stack of JSON.stringify.
 */
export const MAX_DEPTH = 64;

/** Whether `value` nests arrays and objects more than `limit` levels deep, without recursion. */
function deeperThan(value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop() as [unknown, number];
    if (typeof item !== 'object' || item === null) continue;
    if (depth > limit) return true;
    for (const child of Object.values(item)) stack.push([child, depth + 1]);
  }
  return false;
}

export interface WebhookRequest {
  method: string;
  /** Header names in lower case. */
  headers: Record<string, string | undefined>;
  query: Record<string, string | undefined>;
  body: string;
}

export interface WebhookResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface WebhookDependencies {
  auth: DeliveryAuth;
  /**
   * Stores the events in the events queue, one message per event: `items` holds each event's
   * own JSON from the delivery. Throws when any could not be stored.
   */
  enqueue(events: ObjectEvent[], items: unknown[]): Promise<void>;
  /**
   * Puts the delivery's events that do not parse in the events dead-letter queue, each with
   * its error. Throws when any could not be stored.
   */
  deadLetter(malformed: MalformedEvent[]): Promise<void>;
  /** Counts a delivery's ignored event types (metrics). */
  countIgnored?(types: string[]): void;
  /** Counts the events of the replicator's own writes, skipped here (rule 2). */
  countReplicas?(events: ObjectEvent[]): void;
}

const json = (status: number, value: unknown): WebhookResponse => ({
  status,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(value),
});

/**
 * The Event Grid webhook, independent of Lambda: the CloudEvents abuse-protection handshake
 * (OPTIONS), authentication, the 1 MiB limit, parsing, the Event Grid subscription handshake,
 * skipping the events of the replicator's own writes, and storing the rest. It answers 200
 * only when every event is stored, in the events queue or (an event that does not parse) in
 * its dead-letter queue; 503 makes Event Grid deliver again.
 *
 * Event Grid does not retry a webhook's 400, 401, 403 or 413: it dead-letters or drops the
 * delivery. So a 4xx answers only what is certainly bad or forged; a failure on this side
 * (the tenant's signing keys out of reach, a queue refusing) answers 503.
 * https://learn.microsoft.com/azure/event-grid/delivery-and-retry
 * https://learn.microsoft.com/azure/event-grid/end-point-validation-cloud-events-schema
 */
export async function handleWebhook(
  request: WebhookRequest,
  dependencies: WebhookDependencies,
): Promise<WebhookResponse> {
  const method = request.method.toUpperCase();
  if (method === 'OPTIONS') {
    const origin = request.headers['webhook-request-origin'];
    if (!origin) return json(400, { error: 'missing WebHook-Request-Origin header' });
    return {
      status: 200,
      headers: {
        'webhook-allowed-origin': origin,
        'webhook-allowed-rate': '*',
        allow: 'POST, OPTIONS',
      },
      body: '',
    };
  }
  if (method !== 'POST') return json(405, { error: `method ${method} is not allowed; use POST` });

  if (Buffer.byteLength(request.body, 'utf8') > MAX_BODY_BYTES) {
    return json(413, { error: `the body is larger than ${MAX_BODY_BYTES} bytes` });
  }
  const authenticated = await authenticateDelivery(dependencies.auth, request);
  if (!authenticated.ok) {
    return authenticated.retryable
      ? json(503, {
          error: `the delivery could not be checked; deliver again (${authenticated.reason})`,
        })
      : json(401, { error: `unauthenticated: ${authenticated.reason}` });
  }
  let value: unknown;
  try {
    value = JSON.parse(request.body);
  } catch {
    return json(400, { error: 'the body is not valid JSON' });
  }
  if (deeperThan(value, MAX_DEPTH)) {
    return json(400, { error: `the body is nested deeper than ${MAX_DEPTH} levels` });
  }
  let parsed: ReturnType<typeof parseEachEventGridEvent>;
  try {
    // Event by event: one bad event must not make Event Grid drop the good ones with it.
    parsed = parseEachEventGridEvent(value);
  } catch (error) {
    if (error instanceof EventParseError) return json(400, { error: error.message });
    throw error;
  }
  if (parsed.validation) return json(200, { validationResponse: parsed.validation.validationCode });
  if (parsed.ignored.length > 0) dependencies.countIgnored?.(parsed.ignored);
  try {
    if (parsed.events.length > 0) await dependencies.enqueue(parsed.events, parsed.items);
    if (parsed.malformed.length > 0) await dependencies.deadLetter(parsed.malformed);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return json(503, { error: `the events could not all be stored; deliver again (${reason})` });
  }
  // Counted once the delivery is accepted: a delivery answered 503 comes again.
  if (parsed.replicas.length > 0) dependencies.countReplicas?.(parsed.replicas);
  return json(200, {
    stored: parsed.events.length,
    ignored: parsed.ignored.length,
    replicas: parsed.replicas.length,
    deadLettered: parsed.malformed.length,
  });
}
