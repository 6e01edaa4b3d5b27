import { createHash, type Hash } from 'node:crypto';
import http, {
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { type EventGridDelivery, EventGridShim } from './event-grid-shim.ts';
import { EVENT_GRID_STATUS_PATH, headerValue } from './headers.ts';
import { type AuthCheck, SAS_PARAMETERS, refused as sasRefusal, verifySas } from './sas.ts';
import { sign, verify } from './shared-key.ts';

/** Where the shim listens, where Azurite is, and the account both share. */
export interface AzureShimOptions {
  /** Azurite's endpoint, e.g. `http://127.0.0.1:10001`. */
  target: string;
  account: string;
  /** Base64 account key, shared with Azurite. */
  key: string;
  /** 0 or absent for any free port. */
  port?: number;
  host?: string;
  /** Where successful blob writes and deletes are published as Event Grid events. */
  eventGrid?: EventGridDelivery;
}

/** A listening shim. */
export interface RunningAzureShim {
  port: number;
  /** Account URL on the shim: `http://127.0.0.1:<port>/<account>`. */
  accountUrl: string;
  close(): Promise<void>;
}

type PullKind = 'block' | 'blob';

/** Azure refuses Shared Key requests dated more than 15 minutes from its clock. */
const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;
/** Source error bodies are read for their code and message only. */
const MAX_ERROR_BODY = 64 * 1024;
const DEFAULT_VERSION = '2021-12-02';

/** Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, not the message. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  // Node's server has already answered 100-continue to the client.
  'expect',
]);

/** Content properties of Put Blob From URL: request header, and the source header it copies. */
const CONTENT_PROPERTIES = [
  ['x-ms-blob-content-type', 'content-type'],
  ['x-ms-blob-content-encoding', 'content-encoding'],
  ['x-ms-blob-content-language', 'content-language'],
  ['x-ms-blob-content-disposition', 'content-disposition'],
  ['x-ms-blob-cache-control', 'cache-control'],
] as const;

/** Conditions on the copy source, and the header each becomes on the GET of the source. */
const SOURCE_CONDITIONS = [
  ['x-ms-source-if-match', 'if-match'],
  ['x-ms-source-if-none-match', 'if-none-match'],
  ['x-ms-source-if-modified-since', 'if-modified-since'],
  ['x-ms-source-if-unmodified-since', 'if-unmodified-since'],
] as const;

/** Request headers Put Blob From URL shares with Put Blob, carried over as they are. */
const CARRIED_FOR_BLOB =
  /^(x-ms-meta-|x-ms-blob-content-md5$|x-ms-access-tier$|x-ms-tags$|x-ms-immutability-policy-|x-ms-legal-hold$|if-match$|if-none-match$|if-modified-since$|if-unmodified-since$|x-ms-if-tags$)/;
/** Request headers both pull operations share with their plain counterparts. */
const CARRIED_FOR_BOTH = /^(x-ms-client-request-id$|x-ms-lease-id$|x-ms-encryption-scope$)/;

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (char) =>
      ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[char] ?? char,
  );
}

function azureError(
  response: ServerResponse,
  status: number,
  code: string,
  message: string,
  extra: { headers?: Record<string, string>; elements?: Record<string, string> } = {},
): void {
  const elements = Object.entries(extra.elements ?? {})
    .map(([name, value]) => `<${name}>${escapeXml(value)}</${name}>`)
    .join('');
  const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${escapeXml(message)}</Message>${elements}</Error>`;
  response.writeHead(status, {
    'content-type': 'application/xml',
    'x-ms-error-code': code,
    'content-length': Buffer.byteLength(body),
    ...extra.headers,
  });
  response.end(body);
}

function withoutHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const kept: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(name)) kept[name] = value;
  }
  return kept;
}

function pullKind(request: IncomingMessage, query: URLSearchParams): PullKind | undefined {
  if (request.method !== 'PUT' || !headerValue(request.headers, 'x-ms-copy-source')) {
    return undefined;
  }
  if (query.get('comp') === 'block') return 'block';
  // Copy Blob is also a PUT with x-ms-copy-source; only Put Blob From URL names a blob type.
  if (!query.has('comp') && headerValue(request.headers, 'x-ms-blob-type') === 'BlockBlob') {
    return 'blob';
  }
  return undefined;
}

/**
 * Authenticates a pull request the way Azure would: Shared Key with this account's key, or a
 * SAS signed with it. Put Block needs write permission; Put Blob, create or write.
 * https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
 */
function authenticate(
  options: AzureShimOptions,
  request: IncomingMessage,
  kind: PullKind,
): AuthCheck {
  const url = request.url ?? '/';
  const authorization = headerValue(request.headers, 'authorization');
  if (authorization) {
    const date = Date.parse(
      headerValue(request.headers, 'x-ms-date') ?? headerValue(request.headers, 'date') ?? '',
    );
    const verified =
      authorization.startsWith(`SharedKey ${options.account}:`) &&
      verify(options.account, options.key, { method: 'PUT', url, headers: request.headers });
    if (!verified || Number.isNaN(date) || Math.abs(Date.now() - date) > MAX_CLOCK_SKEW_MS) {
      return {
        ok: false,
        status: 403,
        code: 'AuthenticationFailed',
        message:
          'Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.',
      };
    }
    return { ok: true };
  }
  const parsed = new URL(url, 'http://placeholder');
  if (parsed.searchParams.has('sig')) {
    return verifySas(options.account, options.key, parsed, kind === 'block' ? 'w' : 'cw');
  }
  return {
    ok: false,
    status: 401,
    code: 'NoAuthenticationInformation',
    message:
      'Server failed to authenticate the request. Please refer to the information in the www-authenticate header.',
  };
}

interface OpenedSource {
  status: number;
  response?: IncomingMessage;
  /** The source's own error code and message, when it answered with an error. */
  errorCode?: string;
  errorMessage?: string;
}

/** GETs the copy source; resolves with its response, or with its failure (status 0: unreachable). */
function openSource(url: string, headers: Record<string, string>): Promise<OpenedSource> {
  return new Promise((resolve) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      resolve({ status: 400, errorMessage: 'The copy source is not a valid URL.' });
      return;
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      resolve({ status: 400, errorMessage: 'The copy source must be an http or https URL.' });
      return;
    }
    const client = parsed.protocol === 'https:' ? https : http;
    const request = client.get(
      parsed,
      { headers, ...(parsed.protocol === 'http:' && { agent }) },
      (response) => {
        const status = response.statusCode ?? 0;
        if (status === 200 || status === 206) {
          resolve({ status, response });
          return;
        }
        readError(response).then((error) => resolve({ status, ...error }));
      },
    );
    request.once('error', () => resolve({ status: 0 }));
  });
}

/** The code and message of an S3 or Azure error answer (`<Code>`, `<Message>`, or headers). */
async function readError(
  response: IncomingMessage,
): Promise<{ errorCode?: string; errorMessage?: string }> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response) {
      size += (chunk as Buffer).length;
      if (size <= MAX_ERROR_BODY) chunks.push(chunk as Buffer);
    }
  } catch {
    // A broken error body still tells its status.
  }
  const text = Buffer.concat(chunks).toString('utf8');
  const code =
    headerValue(response.headers, 'x-ms-error-code') ??
    headerValue(response.headers, 'x-amz-error-code') ??
    /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
  return { ...(code && { errorCode: code }), ...(message && { errorMessage: message }) };
}

async function readBody(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Passes bytes `[skip, skip + take)` of a stream and hashes what it passes. */
class RangeTap extends Transform {
  readonly hash: Hash = createHash('md5');
  #skip: number;
  #take: number;

  constructor(skip: number, take: number) {
    super();
    this.#skip = skip;
    this.#take = take;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    let part = chunk;
    if (this.#skip > 0) {
      const skipped = Math.min(this.#skip, part.length);
      this.#skip -= skipped;
      part = part.subarray(skipped);
    }
    if (this.#take < part.length) part = part.subarray(0, this.#take);
    this.#take -= part.length;
    if (part.length > 0) {
      this.hash.update(part);
      this.push(part);
    }
    done();
  }
}

/**
 * Sends one request to Azurite and relays its answer (status, headers, body as they come).
 * `decorate` may add headers to a successful answer.
 */
function forward(
  target: URL,
  request: { method: string; path: string; headers: IncomingHttpHeaders },
  response: ServerResponse,
  decorate?: (headers: IncomingHttpHeaders) => void,
  refusal?: (answer: http.IncomingMessage) => AuthCheck | undefined,
): http.ClientRequest {
  const upstream = http.request(
    {
      host: target.hostname,
      port: target.port,
      method: request.method,
      path: request.path,
      headers: request.headers,
      agent,
    },
    (reply) => {
      const refused = refusal?.(reply);
      if (refused && !refused.ok) {
        reply.resume();
        azureError(response, refused.status, refused.code, refused.message);
        return;
      }
      const headers = withoutHopByHop(reply.headers);
      const status = reply.statusCode ?? 502;
      if (status >= 200 && status < 300) decorate?.(headers);
      response.writeHead(status, headers);
      reply.pipe(response);
    },
  );
  response.once('close', () => {
    if (!response.writableFinished) upstream.destroy();
  });
  upstream.on('error', () => {
    if (!response.headersSent) {
      azureError(response, 500, 'InternalError', 'The server encountered an internal error.');
    } else {
      response.destroy();
    }
  });
  return upstream;
}

/**
 * Forwards a request to Azurite as it came (its Host too), streaming both ways. Azurite refuses
 * a wrong Shared Key signature, or a SAS with a wrong signature or out of its validity window,
 * with 403 AuthorizationFailure; Azure answers 403 AuthenticationFailed, which is what tells a
 * client that the credential itself (a rotated key, an expired SAS) is the trouble.
 * https://learn.microsoft.com/rest/api/storageservices/common-rest-api-error-codes
 */
function pass(
  options: AzureShimOptions,
  target: URL,
  request: IncomingMessage,
  response: ServerResponse,
): void {
  const upstream = forward(
    target,
    {
      method: request.method ?? 'GET',
      path: request.url ?? '/',
      // Azurite checks a Copy Blob source against the Host the client used.
      headers: { ...withoutHopByHop(request.headers), host: request.headers.host ?? target.host },
    },
    response,
    undefined,
    (answer) => {
      if (answer.statusCode !== 403 || answer.headers['x-ms-error-code'] !== 'AuthorizationFailure')
        return undefined;
      if (headerValue(request.headers, 'authorization')?.startsWith('SharedKey ')) {
        return sasRefusal('Signature did not match.');
      }
      const url = new URL(request.url ?? '/', 'http://placeholder');
      const sas = url.searchParams;
      if (!sas.has('sig') || sas.has('si') || sas.has('skoid')) return undefined;
      // Signature and time window only: a SAS that passes them was refused for its permissions.
      const check = verifySas(options.account, options.key, url, '');
      return !check.ok && check.code === 'AuthenticationFailed' ? check : undefined;
    },
  );
  request.pipe(upstream);
}

/** The request's path and query without SAS parameters: the shim signs with the key instead. */
function unsignedPath(url: string): string {
  const question = url.indexOf('?');
  if (question < 0) return url;
  // The path goes on as the client sent it (no dot-segment or escape normalisation).
  const kept = url
    .slice(question + 1)
    .split('&')
    .filter((pair) => !SAS_PARAMETERS.has(decodeURIComponent(pair.split('=')[0] ?? '')));
  return kept.length > 0 ? `${url.slice(0, question)}?${kept.join('&')}` : url.slice(0, question);
}

/** Start and length of an `x-ms-source-range` (`bytes=start-end`), when in that form. */
function parseRange(range: string | undefined): { start: number; end?: number } | undefined {
  const match = range ? /^bytes=(\d+)-(\d*)$/.exec(range.trim()) : null;
  if (!match?.[1]) return undefined;
  return { start: Number(match[1]), ...(match[2] && { end: Number(match[2]) }) };
}

/**
 * The headers of the plain Put Block / Put Blob the pull becomes: the request's own, and for
 * Put Blob From URL the content properties, which come from the source unless the request sets
 * them or says `x-ms-copy-source-blob-properties: false`, and its metadata, copied from the
 * source when the request names none.
 */
function stagingHeaders(
  kind: PullKind,
  request: IncomingMessage,
  source: IncomingMessage,
): Record<string, string> {
  const headers: Record<string, string> = {
    'x-ms-version': headerValue(request.headers, 'x-ms-version') ?? DEFAULT_VERSION,
  };
  const carried = kind === 'blob' ? [CARRIED_FOR_BOTH, CARRIED_FOR_BLOB] : [CARRIED_FOR_BOTH];
  for (const [name, raw] of Object.entries(request.headers)) {
    const text = Array.isArray(raw) ? raw.join(',') : raw;
    if (text !== undefined && carried.some((pattern) => pattern.test(name))) headers[name] = text;
  }
  if (kind === 'block') return headers;
  headers['x-ms-blob-type'] = 'BlockBlob';
  const copyProperties =
    headerValue(request.headers, 'x-ms-copy-source-blob-properties')?.toLowerCase() !== 'false';
  for (const [requestName, sourceName] of CONTENT_PROPERTIES) {
    const value =
      headerValue(request.headers, requestName) ??
      (copyProperties ? headerValue(source.headers, sourceName) : undefined);
    if (value !== undefined) headers[requestName] = value;
  }
  if (!Object.keys(request.headers).some((name) => name.startsWith('x-ms-meta-'))) {
    for (const [name, raw] of Object.entries(source.headers)) {
      if (name.startsWith('x-ms-meta-') && typeof raw === 'string') headers[name] = raw;
    }
  }
  return headers;
}

/** Answers a failed source read the way Azure does: its status, and what the source said. */
function sourceFailure(response: ServerResponse, opened: OpenedSource, conditional: boolean): void {
  if ((opened.status === 412 || opened.status === 304) && conditional) {
    azureError(
      response,
      412,
      'SourceConditionNotMet',
      'The source condition specified using HTTP conditional header(s) is not met.',
    );
    return;
  }
  const status = opened.status === 0 ? 500 : opened.status;
  const message =
    opened.status === 0
      ? 'Could not verify the copy source within the specified time.'
      : opened.status === 404
        ? 'The specified resource does not exist.'
        : (opened.errorMessage ?? `The copy source answered ${opened.status}.`);
  azureError(response, status, 'CannotVerifyCopySource', message, {
    ...(opened.status !== 0 && {
      headers: {
        'x-ms-copy-source-status-code': String(opened.status),
        ...(opened.errorCode && { 'x-ms-copy-source-error-code': opened.errorCode }),
      },
      elements: {
        CopySourceStatusCode: String(opened.status),
        ...(opened.errorCode && { CopySourceErrorCode: opened.errorCode }),
        ...(opened.errorMessage && { CopySourceErrorMessage: opened.errorMessage }),
      },
    }),
  });
}

/** Performs Put Block From URL or Put Blob From URL as a plain Put Block or Put Blob. */
async function pull(
  options: AzureShimOptions,
  target: URL,
  kind: PullKind,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  // The request's own body is empty; drain it so the socket can be reused.
  request.resume();
  const auth = authenticate(options, request, kind);
  if (!auth.ok) {
    azureError(response, auth.status, auth.code, auth.message);
    return;
  }
  const rangeHeader = headerValue(request.headers, 'x-ms-source-range');
  const sourceHeaders: Record<string, string> = {};
  if (rangeHeader) sourceHeaders.range = rangeHeader;
  for (const [requestName, sourceName] of SOURCE_CONDITIONS) {
    const value = headerValue(request.headers, requestName);
    if (value !== undefined) sourceHeaders[sourceName] = value;
  }
  const conditional = Object.keys(sourceHeaders).some((name) => name.startsWith('if-'));
  // Azure sends the copy source authorization (a bearer token) to the source, not to itself.
  const sourceAuthorization = headerValue(request.headers, 'x-ms-copy-source-authorization');
  if (sourceAuthorization) sourceHeaders.authorization = sourceAuthorization;
  const opened = await openSource(
    headerValue(request.headers, 'x-ms-copy-source') ?? '',
    sourceHeaders,
  );
  const source = opened.response;
  if (!source) {
    sourceFailure(response, opened, conditional);
    return;
  }
  response.once('close', () => {
    if (!response.writableFinished) source.destroy();
  });

  // A source that ignores Range answers 200 with everything; take the range out of that.
  const range = parseRange(rangeHeader);
  const sourceLength = Number(source.headers['content-length']);
  const sized = Number.isSafeInteger(sourceLength);
  let skip = 0;
  let take = sized ? sourceLength : Number.MAX_SAFE_INTEGER;
  if (range && opened.status === 200) {
    skip = range.start;
    const last = sized ? Math.min(range.end ?? sourceLength - 1, sourceLength - 1) : range.end;
    take = last === undefined ? Number.MAX_SAFE_INTEGER : Math.max(last - range.start + 1, 0);
  }
  let length = sized ? take : Number.NaN;
  const tap = new RangeTap(skip, take);
  source.once('error', (error) => tap.destroy(error));
  source.once('aborted', () => tap.destroy(new Error('the copy source broke off')));
  source.pipe(tap);

  let body: NodeJS.ReadableStream | Buffer = tap;
  const sourceMd5 = headerValue(request.headers, 'x-ms-source-content-md5');
  if (sourceMd5 !== undefined || !Number.isSafeInteger(length)) {
    // Checking a source MD5 (or sizing a source without Content-Length) needs the whole range.
    try {
      body = await readBody(tap);
    } catch {
      sourceFailure(response, { status: 0 }, false);
      return;
    }
    length = body.length;
    if (sourceMd5 !== undefined && tap.hash.copy().digest('base64') !== sourceMd5) {
      azureError(
        response,
        400,
        'Md5Mismatch',
        'The MD5 value specified in the request did not match with the MD5 value calculated by the server.',
      );
      return;
    }
  }

  const path = unsignedPath(request.url ?? '/');
  const headers: Record<string, string> = {
    ...stagingHeaders(kind, request, source),
    'content-length': String(length),
    'x-ms-date': new Date().toUTCString(),
  };
  headers.authorization = sign(options.account, options.key, { method: 'PUT', url: path, headers });
  const upstream = forward(target, { method: 'PUT', path, headers }, response, (answer) => {
    // Azure answers Put Block From URL with the MD5 of the block it staged.
    if (!answer['content-md5']) answer['content-md5'] = tap.hash.copy().digest('base64');
  });
  if (Buffer.isBuffer(body)) {
    upstream.end(body);
    return;
  }
  // A source that breaks off mid-body must not leave a short block behind.
  tap.once('error', () => upstream.destroy());
  body.pipe(upstream);
}

/** Starts the shim on `options.port` (0 for any free port). */
/**
 * Whether a request is a Delete Blob that names `If-None-Match: *`, which Azure documents as
 * "perform the operation only if the resource doesn't exist, and fail it if it does": a blob
 * of uncommitted blocks only can be deleted so, and a committed one cannot. Azurite 3.35
 * ignores `If-None-Match: *` on writes to an existing blob (its own TODO), so the shim checks.
 * https://learn.microsoft.com/rest/api/storageservices/specifying-conditional-headers-for-blob-service-operations
 */
function isDeleteIfAbsent(request: IncomingMessage, url: URL): boolean {
  return (
    request.method === 'DELETE' &&
    headerValue(request.headers, 'if-none-match')?.trim() === '*' &&
    !url.searchParams.has('comp') &&
    !url.searchParams.has('snapshot') &&
    !url.searchParams.has('versionid') &&
    // /<account>/<container>/<blob...>
    url.pathname.split('/').length > 3
  );
}

/** Whether the committed blob at `path` exists in Azurite (a HEAD signed with the key). */
function committedBlobExists(
  options: AzureShimOptions,
  target: URL,
  path: string,
): Promise<boolean> {
  const headers: Record<string, string> = {
    'x-ms-date': new Date().toUTCString(),
    'x-ms-version': DEFAULT_VERSION,
  };
  headers.authorization = sign(options.account, options.key, {
    method: 'HEAD',
    url: path,
    headers,
  });
  return new Promise((resolve, reject) => {
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: 'HEAD', path, headers, agent },
      (reply) => {
        reply.resume();
        resolve(reply.statusCode === 200);
      },
    );
    upstream.on('error', reject);
    upstream.end();
  });
}

async function deleteIfAbsent(
  options: AzureShimOptions,
  target: URL,
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
): Promise<void> {
  if (await committedBlobExists(options, target, url.pathname)) {
    request.resume();
    azureError(
      response,
      412,
      'ConditionNotMet',
      'The condition specified using HTTP conditional header(s) is not met.',
    );
    return;
  }
  pass(options, target, request, response);
}

export async function startAzureShim(options: AzureShimOptions): Promise<RunningAzureShim> {
  const target = new URL(options.target);
  let events: EventGridShim | undefined;
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://placeholder');
    if (request.method === 'GET' && url.pathname === EVENT_GRID_STATUS_PATH) {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ pending: events?.pending() ?? 0 }));
      return;
    }
    events?.observe(request, response, url);
    const kind = pullKind(request, url.searchParams);
    if (!kind && isDeleteIfAbsent(request, url)) {
      deleteIfAbsent(options, target, request, response, url).catch(() => {
        if (!response.headersSent) {
          azureError(response, 500, 'InternalError', 'The server encountered an internal error.');
        } else {
          response.destroy();
        }
      });
      return;
    }
    if (!kind) {
      pass(options, target, request, response);
      return;
    }
    pull(options, target, kind, request, response).catch(() => {
      if (!response.headersSent) {
        azureError(response, 500, 'InternalError', 'The server encountered an internal error.');
      } else {
        response.destroy();
      }
    });
  });
  server.keepAliveTimeout = 30_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  const accountUrl = `http://${host}:${port}/${options.account}`;
  if (options.eventGrid) {
    events = new EventGridShim({
      url: options.eventGrid.url,
      ...(options.eventGrid.secret !== undefined && { secret: options.eventGrid.secret }),
      accountUrl,
      ...(options.eventGrid.containers && { containers: options.eventGrid.containers }),
      ...(options.eventGrid.skipClientRequestIdPrefix !== undefined && {
        skipClientRequestIdPrefix: options.eventGrid.skipClientRequestIdPrefix,
      }),
      ...(options.eventGrid.retryScale !== undefined && {
        retryScale: options.eventGrid.retryScale,
      }),
      onError: (error) => console.error(`azure shim: ${(error as Error).message}`),
    });
  }
  return {
    port,
    accountUrl,
    close: async () => {
      await events?.close();
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}
