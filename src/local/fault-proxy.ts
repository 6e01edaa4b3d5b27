import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { pipeline, type Readable, Transform, type TransformCallback } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { UsageError } from '../errors.ts';

/**
 * What can go wrong between the replicator and a store, as the clouds do it:
 * - `503`: S3 `503 SlowDown`, Azure `503 ServerBusy`; the request was not carried out.
 * - `500`: `500 InternalError` on both; not carried out.
 * - `throttle`: a 503 as above with `Retry-After: 1`.
 * - `reset`: the request is carried out, then the connection is reset after the response's
 *   headers and at most half its body, or before the answer when it has no body (the client
 *   cannot tell whether it happened).
 * - `truncate`: carried out; the response declares its full length but the connection closes
 *   after half of it (without a body: as `reset`).
 * - `latency`: the request waits 200-1,000 ms before it reaches the store.
 */
export const FAULT_KINDS = ['503', '500', 'throttle', 'reset', 'truncate', 'latency'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Which faults, how often, and from which seed (the same seed, the same faults in order). */
export interface FaultPlan {
  /** Fraction of requests that meet a fault, 0-1. */
  rate: number;
  seed: number;
  kinds: FaultKind[];
}

/**
 * Parses `--faults`: `5%`, or comma-separated `rate=5%` (or `0.05`), `seed=<n>`,
 * `kinds=503+500+throttle+reset+truncate+latency` (default all).
 *
 * @throws UsageError naming the part that is wrong.
 */
export function parseFaultPlan(text: string): FaultPlan {
  const plan: FaultPlan = { rate: 0.05, seed: 1, kinds: [...FAULT_KINDS] };
  for (const part of text.split(',').map((item) => item.trim())) {
    if (part === '') continue;
    const [name, value] = part.includes('=') ? part.split('=', 2) : ['rate', part];
    if (name === 'rate') plan.rate = parseRate(value ?? '', part);
    else if (name === 'seed') {
      if (!/^\d+$/.test(value ?? '')) {
        throw new UsageError(`--faults: "${part}": the seed is a whole number`);
      }
      plan.seed = Number(value);
    } else if (name === 'kinds') {
      const kinds = (value ?? '').split('+');
      for (const kind of kinds) {
        if (!(FAULT_KINDS as readonly string[]).includes(kind)) {
          throw new UsageError(
            `--faults: "${kind}" is not a fault (known: ${FAULT_KINDS.join(', ')})`,
          );
        }
      }
      plan.kinds = kinds as FaultKind[];
    } else {
      throw new UsageError(`--faults: "${part}": expected rate=, seed= or kinds=`);
    }
  }
  return plan;
}

function parseRate(value: string, part: string): number {
  const match = /^(\d+(?:\.\d+)?)(%?)$/.exec(value);
  const rate = match ? Number(match[1]) / (match[2] ? 100 : 1) : Number.NaN;
  if (!(rate >= 0 && rate <= 1)) {
    throw new UsageError(
      `--faults: "${part}": the rate is a fraction from 0 to 1, or a percentage`,
    );
  }
  return rate;
}

/** mulberry32: a small seeded generator, so that a seed repeats a run's faults. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * How the proxy models a link to a distant cloud, on every request whether or not it meets a
 * fault.
 */
export interface LinkShape {
  /**
   * One round trip, in milliseconds: each request waits this long before it is forwarded. A
   * request's first byte going up and its answer's first byte coming down each cross the link
   * once, so one round trip in total is charged here, all of it before the request reaches the
   * store (TCP's handshake and slow start are not modelled).
   */
  delayMs: number;
  /**
   * Most bytes a second of each request's body going up and of its response's body coming
   * down; a request holds its connection to the end (HTTP/1.1), so this is a per-connection
   * cap. Default: no cap.
   */
  bytesPerSecond?: number;
}

/**
 * Credit a paced stream may bank while it waits (for its reader, or for a late timer), in
 * milliseconds of its rate: what it may then send at once, before pacing resumes.
 */
const PACING_BURST_MS = 30;
/**
 * The shortest wait: a stream that must wait sleeps at least this long, then sends what the
 * bucket holds by then, so that a fast cap costs one timer (and one pause of its source) per
 * few chunks rather than one per chunk. Less than the burst, so no credit is lost by it.
 */
const PACING_MIN_WAIT_MS = 15;
/** Chunks are sliced to this many milliseconds of the rate (16 KiB at least), to go out evenly. */
const PACING_SLICE_MS = 5;
const MIN_PACING_SLICE = 16 * 1024;

/**
 * A stream that lets bytes through at most at `bytesPerSecond`, a token bucket filled by the
 * clock: each chunk (sliced to {@link PACING_SLICE_MS} of the rate) goes once the bucket holds
 * its bytes, waiting on one timer otherwise (of at least {@link PACING_MIN_WAIT_MS}). It takes
 * the next chunk only when it has passed this one on and its reader wants more, so it holds one
 * chunk at most beyond the streams' own buffers, and backpressure reaches the sender.
 */
export class PacedStream extends Transform {
  readonly #bytesPerMs: number;
  readonly #slice: number;
  /** `performance.now()` at which the bytes sent so far have been paid for. */
  #paidUntil = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;

  constructor(bytesPerSecond: number) {
    super();
    if (!(bytesPerSecond > 0)) {
      throw new RangeError(`bytesPerSecond must be positive, got ${bytesPerSecond}`);
    }
    this.#bytesPerMs = bytesPerSecond / 1000;
    this.#slice = Math.max(MIN_PACING_SLICE, Math.floor(this.#bytesPerMs * PACING_SLICE_MS));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#send(chunk, 0, done);
  }

  #send(chunk: Buffer, offset: number, done: TransformCallback): void {
    this.#timer = undefined;
    while (offset < chunk.length) {
      if (this.destroyed) return;
      const now = performance.now();
      // Idle time (or a late timer) banks at most a burst's worth of credit.
      this.#paidUntil = Math.max(this.#paidUntil, now - PACING_BURST_MS);
      const wait = this.#paidUntil - now;
      if (wait > 0) {
        this.#timer = setTimeout(
          () => this.#send(chunk, offset, done),
          Math.max(Math.ceil(wait), PACING_MIN_WAIT_MS),
        );
        return;
      }
      const slice = chunk.subarray(offset, offset + this.#slice);
      this.#paidUntil += slice.length / this.#bytesPerMs;
      offset += slice.length;
      this.push(slice);
    }
    done();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    callback(error);
  }
}

/**
 * `source` paced at `bytesPerSecond`, or `source` itself without a cap. Destroying either end
 * destroys the other (so a cut response still frees its connection to the store).
 */
function paced(source: Readable, bytesPerSecond: number | undefined): Readable {
  if (bytesPerSecond === undefined) return source;
  // Errors are the streams' own to report; the pipeline only ties their ends together.
  return pipeline(source, new PacedStream(bytesPerSecond), () => undefined);
}

export interface FaultProxy {
  /** The proxy's origin, `http://127.0.0.1:<port>`. */
  url: string;
  /** Faults injected so far, by kind, and requests seen. */
  counts(): { requests: number; faults: Record<FaultKind, number> };
  /**
   * The most requests in flight at once (arrived, not yet answered to the end) since the last
   * call, or since the start; then starts counting again from those in flight now.
   */
  takePeakInFlight(): number;
  /** Turns faults on or off (the requests pass either way). */
  enable(on: boolean): void;
  close(): Promise<void>;
}

// The error bodies the stores send.
// https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
// https://learn.microsoft.com/rest/api/storageservices/common-rest-api-error-codes
function errorResponse(
  store: 's3' | 'azure',
  status: 500 | 503,
): { code: string; message: string; body: string; type: string } {
  const code = status === 500 ? 'InternalError' : store === 's3' ? 'SlowDown' : 'ServerBusy';
  const message =
    status === 500
      ? 'We encountered an internal error. Please try again.'
      : store === 's3'
        ? 'Please reduce your request rate.'
        : 'The server is currently unable to receive requests. Please retry your request.';
  const body =
    store === 's3'
      ? `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`
      : `\uFEFF<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  return { code, message, body, type: 'application/xml' };
}

/**
 * Starts an HTTP proxy in front of one store (`target`, an origin) that injects faults by the
 * plan: what the proxying itself does is http-proxy-3's; which request meets which fault is
 * ours, drawn from the seed in the order requests arrive. The Host header is kept, so SigV4
 * signatures and presigned URLs made for the proxy's address stay valid. With `shape`, every
 * request also crosses a modelled link to a distant cloud (a round trip of delay, a bandwidth
 * cap per connection); a plan of rate 0 then gives the link alone.
 */
export async function startFaultProxy(options: {
  store: 's3' | 'azure';
  target: string;
  plan: FaultPlan;
  port?: number;
  shape?: LinkShape;
}): Promise<FaultProxy> {
  const { plan, store } = options;
  const delayMs = options.shape?.delayMs ?? 0;
  const bytesPerSecond = options.shape?.bytesPerSecond;
  if (!(Number.isFinite(delayMs) && delayMs >= 0)) {
    throw new RangeError(`shape.delayMs must be a number >= 0, got ${delayMs}`);
  }
  if (bytesPerSecond !== undefined && !(bytesPerSecond > 0)) {
    throw new RangeError(`shape.bytesPerSecond must be positive, got ${bytesPerSecond}`);
  }
  const next = seededRandom(plan.seed);
  const faults = Object.fromEntries(FAULT_KINDS.map((kind) => [kind, 0])) as Record<
    FaultKind,
    number
  >;
  let requests = 0;
  let inFlight = 0;
  let peakInFlight = 0;
  let enabled = true;
  const pending = new WeakMap<http.IncomingMessage, 'reset' | 'truncate'>();
  const proxy = createProxyServer({
    target: options.target,
    selfHandleResponse: true,
    changeOrigin: false,
    xfwd: false,
    proxyTimeout: 120_000,
  });
  proxy.on('proxyRes', (upstream, request, response) => {
    const fault = pending.get(request);
    const status = upstream.statusCode ?? 502;
    const body = paced(upstream, bytesPerSecond);
    if (!fault) {
      response.writeHead(status, upstream.headers);
      body.pipe(response);
      return;
    }
    // A HEAD (or 204/304) answer declares a length but has no body to cut.
    const bodyless = request.method === 'HEAD' || status === 204 || status === 304;
    const keep = bodyless ? 0 : Math.floor(Number(upstream.headers['content-length'] ?? 0) / 2);
    if (keep === 0) {
      // Nothing of a body to give: the connection goes before the answer does, so the client
      // cannot tell whether the request was carried out.
      upstream.resume();
      if (body !== upstream) body.resume();
      response.socket?.destroy();
      return;
    }
    response.writeHead(status, upstream.headers);
    let sent = 0;
    body.on('data', (chunk: Buffer) => {
      if (sent >= keep) return;
      const part = chunk.subarray(0, keep - sent);
      sent += part.length;
      response.write(part);
      if (sent >= keep) {
        body.destroy();
        upstream.destroy();
        // A reset is abrupt; a truncated response ends as if the body were complete.
        if (fault === 'reset') response.socket?.destroy();
        else response.socket?.end();
      }
    });
    // A body shorter than it declared (not ours to cut): pass on its end.
    body.on('end', () => {
      if (sent < keep) response.end();
    });
  });
  proxy.on('error', (_error, _request, response) => {
    // The store went away or the client did: nothing more to send.
    if (response instanceof http.ServerResponse) response.socket?.destroy();
    else response?.destroy();
  });
  const server = http.createServer((request, response) => {
    requests += 1;
    inFlight += 1;
    peakInFlight = Math.max(peakInFlight, inFlight);
    response.once('close', () => {
      inFlight -= 1;
    });
    const kind =
      enabled && plan.kinds.length > 0 && next() < plan.rate
        ? plan.kinds[Math.floor(next() * plan.kinds.length)]
        : undefined;
    if (kind) faults[kind] += 1;
    // Drawn now, so that the seed gives the same faults in the same order whatever the delay.
    const latency = kind === 'latency' ? 200 + Math.floor(next() * 800) : 0;
    const handle = () => answer(request, response, kind, latency);
    if (delayMs > 0) setTimeout(handle, delayMs);
    else handle();
  });
  const answer = (
    request: http.IncomingMessage,
    response: http.ServerResponse,
    kind: FaultKind | undefined,
    latency: number,
  ) => {
    if (kind === '503' || kind === '500' || kind === 'throttle') {
      const error = errorResponse(store, kind === '500' ? 500 : 503);
      // Answered once the request is read, as a store answers a request it will not carry out.
      request.resume();
      request.on('end', () => {
        response.writeHead(kind === '500' ? 500 : 503, {
          'content-type': error.type,
          'content-length': Buffer.byteLength(error.body),
          ...(store === 'azure' && { 'x-ms-error-code': error.code }),
          ...(kind === 'throttle' && { 'retry-after': '1' }),
        });
        response.end(error.body);
      });
      return;
    }
    if (kind === 'reset' || kind === 'truncate') pending.set(request, kind);
    const forward = () =>
      bytesPerSecond === undefined
        ? proxy.web(request, response)
        : // The request's body goes up paced (http-proxy-3 sends `buffer` in place of it).
          proxy.web(request, response, { buffer: paced(request, bytesPerSecond) });
    if (latency > 0) setTimeout(forward, latency);
    else forward();
  };
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    counts: () => ({ requests, faults: { ...faults } }),
    takePeakInFlight() {
      const peak = peakInFlight;
      peakInFlight = inFlight;
      return peak;
    },
    enable(on) {
      enabled = on;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      proxy.close();
    },
  };
}
