import { createHmac, timingSafeEqual } from 'node:crypto';

/** The parts of an HTTP request that Azure Storage's Shared Key signature covers. */
export interface SignableRequest {
  method: string;
  /** Path and query exactly as sent (percent-encoded), e.g. `/account/container/blob?comp=block`. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

function value(headers: SignableRequest['headers'], name: string): string {
  const raw = headers[name];
  return (Array.isArray(raw) ? raw.join(',') : raw) ?? '';
}

/**
 * The Shared Key string-to-sign for the Blob service (version 2009-09-19 and later).
 * https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
 */
export function stringToSign(account: string, request: SignableRequest): string {
  const { headers } = request;
  const contentLength = value(headers, 'content-length');
  const standard = [
    request.method.toUpperCase(),
    value(headers, 'content-encoding'),
    value(headers, 'content-language'),
    contentLength === '0' ? '' : contentLength,
    value(headers, 'content-md5'),
    value(headers, 'content-type'),
    value(headers, 'x-ms-date') ? '' : value(headers, 'date'),
    value(headers, 'if-modified-since'),
    value(headers, 'if-match'),
    value(headers, 'if-none-match'),
    value(headers, 'if-unmodified-since'),
    value(headers, 'range'),
  ];
  const canonicalHeaders = Object.keys(headers)
    .map((name) => name.toLowerCase())
    .filter((name) => name.startsWith('x-ms-'))
    .sort()
    .map((name) => `${name}:${value(headers, name).trimStart()}\n`)
    .join('');
  const url = new URL(request.url, 'http://placeholder');
  let resource = `/${account}${url.pathname}`;
  const names = [...new Set([...url.searchParams.keys()].map((name) => name.toLowerCase()))].sort();
  for (const name of names) {
    const values = [...url.searchParams.entries()]
      .filter(([key]) => key.toLowerCase() === name)
      .map(([, v]) => v)
      .sort();
    resource += `\n${name}:${values.join(',')}`;
  }
  return `${standard.join('\n')}\n${canonicalHeaders}${resource}`;
}

/** The `Authorization` header value for `request`. */
export function sign(account: string, key: string, request: SignableRequest): string {
  const signature = createHmac('sha256', Buffer.from(key, 'base64'))
    .update(stringToSign(account, request), 'utf8')
    .digest('base64');
  return `SharedKey ${account}:${signature}`;
}

/** Whether `request` carries a valid Shared Key signature for this account and key. */
export function verify(account: string, key: string, request: SignableRequest): boolean {
  const given = value(request.headers, 'authorization');
  const expected = sign(account, key, request);
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
