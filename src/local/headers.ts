import type { IncomingHttpHeaders } from 'node:http';

/** One header of a request: its first value when it was sent more than once. */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}
