import type { IncomingHttpHeaders } from 'node:http';

/** One header of a request: its first value when it was sent more than once. */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The Azure shim's one route of its own (no Azure API): `GET` it for `{"pending":N}`, the
 * events the Event Grid shim has not delivered to the webhook yet.
 */
export const EVENT_GRID_STATUS_PATH = '/_s3az/event-grid';
