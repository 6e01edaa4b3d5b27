import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SECRET_HEADER } from '../auth/event-grid-auth.ts';
import { headerValue } from './headers.ts';

/**
 * Event Grid for the local Azure endpoint, which has none: after each successful Put Blob,
 * Put Block List, Copy Blob, Put Blob From URL and Delete Blob, the event a storage account's
 * system topic would publish (Event Grid schema) is delivered to the webhook, in batches, with
 * the configured shared secret, and delivered again with backoff when the webhook does not
 * answer 2xx. https://learn.microsoft.com/azure/event-grid/event-schema-blob-storage
 */
/** Where the local Event Grid delivers, as `startEmulators` and the Azure shim take it. */
export type EventGridDelivery = Pick<
  EventGridShimOptions,
  'url' | 'secret' | 'containers' | 'skipClientRequestIdPrefix' | 'retryScale'
>;

export interface EventGridShimOptions {
  /** The webhook's URL. */
  url: string;
  /** Sent as the `x-s3az-secret` header (a delivery attribute in Azure). */
  secret?: string;
  /** The account URL that events name blobs under (the public endpoint). */
  accountUrl: string;
  /**
   * Only blobs in these containers (the subscription's `subjectBeginsWith` filters, one per
   * container); all when absent.
   */
  containers?: string[];
  /**
   * The subscription's advanced filter `data.clientRequestId` `StringNotBeginsWith` this prefix,
   * as `s3az setup azure` makes it: the events of the replicator's own writes are not delivered.
   * Absent: every event is delivered (a subscription without the filter), and the webhook skips
   * them itself.
   */
  skipClientRequestIdPrefix?: string;
  /** Events per delivery (Event Grid's maxEventsPerBatch); default 10. */
  maxEventsPerBatch?: number;
  /** Attempts per delivery (Event Grid's maxDeliveryAttempts); default 30, as Event Grid. */
  maxAttempts?: number;
  /** Scales the retry schedule (tests shorten it); default 1. */
  retryScale?: number;
  onError?: (error: unknown) => void;
}

/**
 * Event Grid's retry policy for a webhook: it waits 10 s, 30 s, 1 min, 5 min, 10 min, 30 min,
 * then an hour between attempts, for at most 30 attempts or 24 hours (the event's time to
 * live), and does not retry 400, 401, 403 or 413.
 * https://learn.microsoft.com/azure/event-grid/delivery-and-retry
 */
const RETRY_SCHEDULE_MS = [10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000];
const EVENT_TIME_TO_LIVE_MS = 24 * 3_600_000;
const NOT_RETRIED = new Set([400, 401, 403, 413]);

/** The wait after failed attempt `attempt` (1-based). */
export function retryDelayMs(attempt: number): number {
  return RETRY_SCHEDULE_MS[Math.min(attempt, RETRY_SCHEDULE_MS.length) - 1] ?? 3_600_000;
}

type Operation = { type: 'created'; api: string } | { type: 'deleted'; api: string };

/** The blob operation a request (its URL parsed) performs, when it is one Event Grid reports. */
function blobOperationOf(request: IncomingMessage, url: URL): Operation | undefined {
  const comp = url.searchParams.get('comp');
  const copySource = headerValue(request.headers, 'x-ms-copy-source') !== undefined;
  const blobType = headerValue(request.headers, 'x-ms-blob-type');
  if (request.method === 'PUT') {
    if (comp === 'blocklist') return { type: 'created', api: 'PutBlockList' };
    if (comp !== null) return undefined;
    if (copySource) return { type: 'created', api: blobType ? 'PutBlobFromUrl' : 'CopyBlob' };
    if (blobType === 'BlockBlob') return { type: 'created', api: 'PutBlob' };
    return undefined;
  }
  if (request.method === 'DELETE' && comp === null) return { type: 'deleted', api: 'DeleteBlob' };
  return undefined;
}

/** Container and blob name of a request path `/<account>/<container>/<blob>`. */
function blobOf(url: URL): { container: string; blob: string } | undefined {
  const [, , container, ...rest] = url.pathname.split('/');
  if (!container || rest.length === 0) return undefined;
  const blob = decodeURIComponent(rest.join('/'));
  return blob === '' ? undefined : { container, blob };
}

export class EventGridShim {
  readonly #options: EventGridShimOptions;
  #pending: unknown[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #wakers = new Set<() => void>();
  #undelivered = 0;
  #counter = 0;
  #closed = false;

  /** The storage account's name, from the account URL's path (the emulator's form). */
  readonly #account: string;

  constructor(options: EventGridShimOptions) {
    this.#options = options;
    this.#account = new URL(options.accountUrl).pathname.split('/').filter(Boolean)[0] ?? '';
  }

  /**
   * Watches one request (`url`: its URL, parsed); publishes its event if it is a blob write or
   * delete that succeeds.
   */
  observe(request: IncomingMessage, response: ServerResponse, url: URL): void {
    const operation = blobOperationOf(request, url);
    const target = operation && blobOf(url);
    if (!operation || !target) return;
    const containers = this.#options.containers;
    if (containers && !containers.includes(target.container)) return;
    let status = 0;
    let headers: Record<string, unknown> = {};
    const writeHead = response.writeHead.bind(response) as (...args: unknown[]) => ServerResponse;
    (response as unknown as { writeHead: (...args: unknown[]) => ServerResponse }).writeHead = (
      ...args: unknown[]
    ) => {
      status = Number(args[0]);
      const last = args.at(-1);
      if (last && typeof last === 'object') headers = last as Record<string, unknown>;
      return writeHead(...args);
    };
    response.once('finish', () => {
      const code = status || response.statusCode;
      if (code < 200 || code >= 300) return;
      const etag = String(headers.etag ?? response.getHeader('etag') ?? '') || undefined;
      const length = headerValue(request.headers, 'content-length');
      const clientRequestId = headerValue(request.headers, 'x-ms-client-request-id');
      const skipped = this.#options.skipClientRequestIdPrefix;
      if (skipped && clientRequestId?.startsWith(skipped)) return;
      this.#publish(operation, target.container, target.blob, {
        ...(clientRequestId !== undefined && { clientRequestId }),
        ...(etag !== undefined && { etag }),
        ...(operation.api === 'PutBlob' && length !== undefined && { size: Number(length) }),
      });
    });
  }

  #publish(
    operation: Operation,
    container: string,
    blob: string,
    details: { etag?: string; size?: number; clientRequestId?: string },
  ): void {
    this.#counter += 1;
    // Azure's sequencer grows with each change of a blob; one counter for all keeps that.
    const sequencer = (BigInt(Date.now()) * 1_000_000n + BigInt(this.#counter))
      .toString(16)
      .padStart(32, '0');
    const encoded = blob.split('/').map(encodeURIComponent).join('/');
    this.#pending.push({
      topic: `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/${this.#account}`,
      subject: `/blobServices/default/containers/${container}/blobs/${blob}`,
      eventType:
        operation.type === 'created'
          ? 'Microsoft.Storage.BlobCreated'
          : 'Microsoft.Storage.BlobDeleted',
      id: randomUUID(),
      eventTime: new Date().toISOString(),
      dataVersion: '',
      metadataVersion: '1',
      data: {
        api: operation.api,
        // The client's own x-ms-client-request-id, as Azure reports it; empty without one.
        clientRequestId: details.clientRequestId ?? '',
        requestId: randomUUID(),
        ...(details.etag !== undefined && { eTag: details.etag.replace(/"/g, '') }),
        contentType: 'application/octet-stream',
        ...(details.size !== undefined && { contentLength: details.size }),
        blobType: 'BlockBlob',
        url: `${this.#options.accountUrl.replace(/\/+$/, '')}/${container}/${encoded}`,
        sequencer,
        storageDiagnostics: { batchId: randomUUID() },
      },
    });
    if (this.#pending.length >= (this.#options.maxEventsPerBatch ?? 10)) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), 5);
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length === 0) return;
    this.#undelivered += batch.length;
    const delivery = this.#deliver(batch)
      .catch((error) => this.#options.onError?.(error))
      .finally(() => {
        this.#undelivered -= batch.length;
      });
    this.#inFlight.add(delivery);
    delivery.finally(() => this.#inFlight.delete(delivery));
  }

  async #deliver(batch: unknown[]): Promise<void> {
    const attempts = this.#options.maxAttempts ?? 30;
    const expires = Date.now() + EVENT_TIME_TO_LIVE_MS;
    let last = '';
    for (let attempt = 1; attempt <= attempts && !this.#closed; attempt++) {
      try {
        const response = await fetch(this.#options.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'aeg-event-type': 'Notification',
            ...(this.#options.secret !== undefined && { [SECRET_HEADER]: this.#options.secret }),
          },
          body: JSON.stringify(batch),
        });
        await response.arrayBuffer();
        if (response.ok) return;
        last = `HTTP ${response.status}`;
        if (NOT_RETRIED.has(response.status)) break;
      } catch (error) {
        last = error instanceof Error ? error.message : String(error);
      }
      const wait = retryDelayMs(attempt) * (this.#options.retryScale ?? 1);
      if (attempt === attempts || this.#closed || Date.now() + wait > expires) break;
      await this.#sleep(wait);
    }
    throw new Error(`an Event Grid delivery of ${batch.length} events failed: ${last}`);
  }

  /**
   * Events not yet taken by the webhook: waiting to be batched, being delivered, or waiting
   * for a retry. (The local stack's own question, for tests that wait for the mirror to settle.)
   */
  pending(): number {
    return this.#pending.length + this.#undelivered;
  }

  /** A retry's wait, cut short by `close`. */
  #sleep(ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wakers.add(wake);
    });
  }

  /**
   * Stops: what is waiting to be batched gets one attempt; a delivery waiting for a retry, or
   * one that fails now, is given up.
   */
  async close(): Promise<void> {
    this.#flush();
    this.#closed = true;
    for (const wake of [...this.#wakers]) wake();
    await Promise.allSettled([...this.#inFlight]);
  }
}
