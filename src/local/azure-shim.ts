import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { sign, verify } from './shared-key.ts';

/**
 * A reverse proxy in front of Azurite that performs what Azurite answers 501 to, the way Azure
 * does: Put Block From URL and Put Blob From URL. The shim authenticates the request (Shared
 * Key), fetches the source range itself, and stages the bytes into Azurite as a plain Put Block
 * or Put Blob, signed with the account key. Every other request passes through untouched.
 */
export interface AzureShimOptions {
  /** Azurite's endpoint, e.g. `http://127.0.0.1:10001`. */
  target: string;
  account: string;
  /** Base64 account key, shared with Azurite. */
  key: string;
  port?: number;
  host?: string;
}

export interface RunningAzureShim {
  port: number;
  /** Account URL on the shim: `http://127.0.0.1:<port>/<account>`. */
  accountUrl: string;
  close(): Promise<void>;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function headerValue(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function azureError(response: ServerResponse, status: number, code: string, message: string): void {
  const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  response.writeHead(status, {
    'content-type': 'application/xml',
    'x-ms-error-code': code,
    'content-length': Buffer.byteLength(body),
  });
  response.end(body);
}

function isPullRequest(
  request: IncomingMessage,
  query: URLSearchParams,
): 'block' | 'blob' | undefined {
  if (request.method !== 'PUT' || !headerValue(request, 'x-ms-copy-source')) return undefined;
  if (query.get('comp') === 'block') return 'block';
  // Copy Blob is also a PUT with x-ms-copy-source; only Put Blob From URL names a blob type.
  if (!query.has('comp') && headerValue(request, 'x-ms-blob-type') === 'BlockBlob') return 'blob';
  return undefined;
}

/** Opens the copy source; resolves with its response, or with the failure status (0: unreachable). */
function openSource(
  url: string,
  range: string | undefined,
  ifMatch: string | undefined,
): Promise<{ status: number; response?: IncomingMessage }> {
  return new Promise((resolve) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      resolve({ status: 400 });
      return;
    }
    const client = parsed.protocol === 'https:' ? https : http;
    const request = client.get(
      parsed,
      {
        headers: { ...(range && { range }), ...(ifMatch && { 'if-match': ifMatch }) },
        ...(parsed.protocol === 'http:' && { agent }),
      },
      (response) => {
        const status = response.statusCode ?? 0;
        if (status !== 200 && status !== 206) {
          response.resume();
          resolve({ status });
          return;
        }
        resolve({ status, response });
      },
    );
    request.once('error', () => resolve({ status: 0 }));
  });
}

async function readBody(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Sends one request to Azurite and relays its answer, status, headers and body as they come. */
function forward(
  target: URL,
  request: { method: string; path: string; headers: http.OutgoingHttpHeaders },
  response: ServerResponse,
): http.ClientRequest {
  const upstream = http.request(
    {
      host: target.hostname,
      port: target.port,
      method: request.method,
      path: request.path,
      headers: { ...request.headers, host: target.host },
      agent,
    },
    (reply) => {
      response.writeHead(reply.statusCode ?? 502, reply.headers);
      reply.pipe(response);
    },
  );
  upstream.on('error', () => {
    if (!response.headersSent) {
      azureError(response, 502, 'InternalError', 'Azurite is not reachable.');
    } else {
      response.destroy();
    }
  });
  return upstream;
}

/** Forwards a request to Azurite as it came, streaming both ways. */
function pass(target: URL, request: IncomingMessage, response: ServerResponse): void {
  const upstream = forward(
    target,
    { method: request.method ?? 'GET', path: request.url ?? '/', headers: request.headers },
    response,
  );
  request.pipe(upstream);
}

/**
 * Sends a signed PUT to Azurite whose body is the source's bytes, streamed through without
 * being held, and relays Azurite's answer.
 */
function stage(
  options: AzureShimOptions,
  target: URL,
  url: string,
  headers: Record<string, string>,
  body: IncomingMessage | Buffer,
  length: number,
  response: ServerResponse,
): void {
  const all: Record<string, string> = {
    ...headers,
    'content-length': String(length),
    'x-ms-date': new Date().toUTCString(),
  };
  all.authorization = sign(options.account, options.key, { method: 'PUT', url, headers: all });
  const upstream = forward(target, { method: 'PUT', path: url, headers: all }, response);
  if (Buffer.isBuffer(body)) {
    upstream.end(body);
    return;
  }
  // A source that breaks off mid-body must not leave a short block behind.
  body.once('error', () => upstream.destroy());
  body.once('aborted', () => upstream.destroy());
  body.pipe(upstream);
}

const FORWARDED_FOR_BLOB =
  /^(x-ms-blob-content-|x-ms-blob-cache-control$|x-ms-meta-|x-ms-version$|x-ms-client-request-id$|x-ms-access-tier$|x-ms-tags$)/;

async function pull(
  options: AzureShimOptions,
  target: URL,
  kind: 'block' | 'blob',
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  // The request's own body is empty; drain it so the socket can be reused.
  request.resume();
  const url = request.url ?? '/';
  if (
    !headerValue(request, 'authorization') ||
    !verify(options.account, options.key, { method: 'PUT', url, headers: request.headers })
  ) {
    azureError(
      response,
      403,
      'AuthenticationFailed',
      'Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.',
    );
    return;
  }
  const source = headerValue(request, 'x-ms-copy-source') ?? '';
  const range = headerValue(request, 'x-ms-source-range');
  const opened = await openSource(source, range, headerValue(request, 'x-ms-source-if-match'));
  if (!opened.response) {
    // Azure reports any failure to read the source as CannotVerifyCopySource with its status.
    azureError(
      response,
      opened.status === 0 ? 500 : opened.status,
      'CannotVerifyCopySource',
      opened.status === 0
        ? 'Could not reach the copy source.'
        : `The copy source answered ${opened.status}.`,
    );
    return;
  }
  let body: IncomingMessage | Buffer = opened.response;
  let length = Number(opened.response.headers['content-length']);
  const sourceMd5 = headerValue(request, 'x-ms-source-content-md5');
  if (sourceMd5 || !Number.isSafeInteger(length)) {
    // Checking a source MD5 (or sizing a chunked source) needs the whole range first.
    body = await readBody(opened.response);
    length = body.length;
    if (sourceMd5 && createHash('md5').update(body).digest('base64') !== sourceMd5) {
      azureError(
        response,
        400,
        'Md5Mismatch',
        'The MD5 value specified in the request did not match the MD5 value calculated by the server.',
      );
      return;
    }
  }
  const headers: Record<string, string> = {
    'x-ms-version': headerValue(request, 'x-ms-version') ?? '2021-12-02',
  };
  if (kind === 'blob') {
    headers['x-ms-blob-type'] = 'BlockBlob';
    for (const [name, raw] of Object.entries(request.headers)) {
      const text = Array.isArray(raw) ? raw[0] : raw;
      if (text !== undefined && FORWARDED_FOR_BLOB.test(name)) headers[name] = text;
    }
    for (const name of ['if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since']) {
      const text = headerValue(request, name);
      if (text !== undefined) headers[name] = text;
    }
  }
  stage(options, target, url, headers, body, length, response);
}

/** Starts the shim on `port` (0 for any free port). */
export async function startAzureShim(options: AzureShimOptions): Promise<RunningAzureShim> {
  const target = new URL(options.target);
  const server = http.createServer((request, response) => {
    const query = new URL(request.url ?? '/', 'http://placeholder').searchParams;
    const kind = isPullRequest(request, query);
    if (!kind) {
      pass(target, request, response);
      return;
    }
    pull(options, target, kind, request, response).catch(() => {
      if (!response.headersSent) azureError(response, 500, 'InternalError', 'The shim failed.');
    });
  });
  server.keepAliveTimeout = 30_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    accountUrl: `http://${host}:${port}/${options.account}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
