import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EventGridShim, retryDelayMs } from '../../src/local/event-grid-shim.ts';

/** A webhook that answers each delivery with the next status of `answers` (then 200). */
async function webhook(answers: Array<number | 'drop'>) {
  const deliveries: unknown[][] = [];
  let attempts = 0;
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const answer = answers[attempts] ?? 200;
      attempts += 1;
      if (answer === 'drop') {
        request.socket.destroy();
        return;
      }
      if (answer === 200) deliveries.push(JSON.parse(Buffer.concat(chunks).toString()));
      response.writeHead(answer).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/eventgrid`,
    deliveries,
    attempts: () => attempts,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A store endpoint that answers 201 to every request, watched by `shim` as the Azure shim does. */
async function store(shim: () => EventGridShim) {
  const server = http.createServer((request, response) => {
    shim().observe(request, response, new URL(request.url ?? '/', 'http://local'));
    request.resume();
    request.on('end', () => response.writeHead(201, { etag: '"0x1"' }).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    put: (path: string) =>
      fetch(`${base}${path}`, {
        method: 'PUT',
        headers: { 'x-ms-blob-type': 'BlockBlob', 'content-length': '1' },
        body: 'x',
      }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const closing: Array<() => Promise<void>> = [];

/**
 * A shim (retries 1,000 times faster than Event Grid) delivering to a webhook that answers
 * `answers`, in front of a store; its delivery errors in `errors`. Closed after the test.
 */
async function shimBefore(answers: Array<number | 'drop'>, options: { maxAttempts?: number } = {}) {
  const hook = await webhook(answers);
  const errors: Error[] = [];
  const shim = new EventGridShim({
    url: hook.url,
    accountUrl: 'http://127.0.0.1:1/devstoreaccount1',
    retryScale: 0.001,
    ...options,
    onError: (error) => errors.push(error as Error),
  });
  const azure = await store(() => shim);
  closing.push(hook.close, azure.close, () => shim.close());
  return { hook, errors, azure };
}
afterEach(async () => {
  for (const close of closing.splice(0).reverse()) await close();
});

async function until(condition: () => boolean, what: string) {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('Class: EventGridShim', () => {
  it('waits as Event Grid does between attempts: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, then hourly', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 29].map(retryDelayMs)).toEqual([
      10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000, 3_600_000, 3_600_000,
    ]);
  });

  it('delivers again after 503s and dropped connections, until the webhook takes the event', async () => {
    const { hook, errors, azure } = await shimBefore([503, 'drop', 500]);
    await azure.put('/devstoreaccount1/data/a.txt');
    await until(() => hook.deliveries.length === 1, 'the delivery');
    expect(hook.attempts()).toBe(4);
    expect(hook.deliveries[0]).toMatchObject([
      {
        eventType: 'Microsoft.Storage.BlobCreated',
        subject: '/blobServices/default/containers/data/blobs/a.txt',
      },
    ]);
    expect(errors).toEqual([]);
  });

  it.each([400, 401, 403, 413])(
    'does not retry a delivery the webhook answered %i (nor does Event Grid)',
    async (status) => {
      const { hook, errors, azure } = await shimBefore([status]);
      await azure.put('/devstoreaccount1/data/b.txt');
      await until(() => errors.length === 1, 'the failed delivery');
      expect(errors[0]?.message).toContain(`HTTP ${status}`);
      expect(hook.attempts()).toBe(1);
    },
  );

  it('gives up after its attempts, naming the last answer', async () => {
    const { hook, errors, azure } = await shimBefore([503, 503, 503], { maxAttempts: 3 });
    await azure.put('/devstoreaccount1/data/c.txt');
    await until(() => errors.length === 1, 'the failed delivery');
    expect(errors[0]?.message).toMatch(/delivery of 1 events failed: HTTP 503/);
    expect(hook.attempts()).toBe(3);
  });
});
