import { parseEventGridDelivery } from './event-grid.ts';
import {
  EventParseError,
  isRecord,
  type ParsedNotification,
  type ProvenanceOptions,
} from './object-event.ts';
import { parseS3Notification } from './s3-notification.ts';

/**
 * Parses one message of the `events` queue, whichever way it arrived: an S3 notification
 * (straight, through SNS or EventBridge) or an Event Grid event the webhook stored (either
 * schema). Throws only `EventParseError`, which is permanent: the message goes to the
 * dead-letter queue with the reason instead of being retried.
 */
export function parseQueuedEvent(
  body: string,
  options: ProvenanceOptions = {},
): ParsedNotification {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    throw new EventParseError('the message body is not valid JSON', { cause: error });
  }
  const looksLikeEventGrid = (item: unknown) =>
    isRecord(item) && (typeof item.eventType === 'string' || item.specversion !== undefined);
  if (
    looksLikeEventGrid(value) ||
    (Array.isArray(value) && value.length > 0 && value.every(looksLikeEventGrid))
  ) {
    // The webhook keeps the replicator's own writes out of the queue; one that arrives some
    // other way is returned marked `writtenBy: 'replicator'`, and the plan step skips it.
    const { events, replicas, ignored } = parseEventGridDelivery(value);
    return { events: [...events, ...replicas], ignored };
  }
  return parseS3Notification(body, options);
}
