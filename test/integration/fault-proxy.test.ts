import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import { PullMemory } from '../../src/copy/pull-memory.ts';
import { runCopyTask } from '../../src/copy/run-task.ts';
import type { CopyTask } from '../../src/core/route.ts';
import { ReplicatorError, UsageError } from '../../src/errors.ts';
import {
  FAULT_KINDS,
  type FaultProxy,
  parseFaultPlan,
  startFaultProxy,
} from '../../src/local/fault-proxy.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { makeS3Client as makeProjectS3Client, pipelineOptions } from '../../src/stores/clients.ts';
import type { ObjectStore } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import {
  emulatorEnv,
  emulatorVariables,
  makeBlobServiceClient,
  makeS3Client,
  uniqueName,
} from '../support/emulators.ts';
import { putObject, readAll } from '../support/streams.ts';

const MiB = 1024 * 1024;
const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('Function: parseFaultPlan', () => {
  it('reads a rate, a seed and kinds, with every kind by default', () => {
    expect(parseFaultPlan('5%')).toEqual({ rate: 0.05, seed: 1, kinds: [...FAULT_KINDS] });
    expect(parseFaultPlan('rate=0.2,seed=42,kinds=503+reset')).toEqual({
      rate: 0.2,
      seed: 42,
      kinds: ['503', 'reset'],
    });
  });

  it.each([
    ['rate=150%', /rate=150%.*fraction from 0 to 1/],
    ['kinds=503+slow', /"slow" is not a fault/],
    ['seed=x', /seed=x.*whole number/],
    ['speed=3', /speed=3.*expected rate=, seed= or kinds=/],
  ])('refuses "%s", naming what is wrong', (text, message) => {
    expect(() => parseFaultPlan(text)).toThrow(UsageError);
    expect(() => parseFaultPlan(text)).toThrow(message);
  });
});

describe('Function: startFaultProxy', () => {
  const proxies: FaultProxy[] = [];
  let s3Direct: S3ObjectStore;
  let azureDirect: AzureBlobObjectStore;
  let s3Faulty: S3ObjectStore;
  let azureFaulty: AzureBlobObjectStore;
  let s3Proxy: FaultProxy;
  let azureProxy: FaultProxy;

  beforeAll(async () => {
    const env = emulatorEnv();
    const bucket = uniqueName('faults');
    await makeS3Client().send(new CreateBucketCommand({ Bucket: bucket }));
    const container = uniqueName('faults');
    await makeBlobServiceClient().getContainerClient(container).create();
    s3Direct = new S3ObjectStore(makeS3Client(), bucket);
    azureDirect = new AzureBlobObjectStore(makeBlobServiceClient().getContainerClient(container));
    const plan = parseFaultPlan('rate=25%,seed=7');
    s3Proxy = await startFaultProxy({ store: 's3', target: env.s3Endpoint, plan });
    const azureOrigin = new URL(env.azureAccountUrl).origin;
    azureProxy = await startFaultProxy({ store: 'azure', target: azureOrigin, plan });
    proxies.push(s3Proxy, azureProxy);
    s3Faulty = new S3ObjectStore(
      makeProjectS3Client({ ...emulatorVariables(), AWS_ENDPOINT_URL_S3: s3Proxy.url }),
      bucket,
    );
    const account = new URL(env.azureAccountUrl).pathname;
    azureFaulty = new AzureBlobObjectStore(
      new BlobServiceClient(
        `${azureProxy.url}${account}`,
        new StorageSharedKeyCredential(env.azureAccountName, env.azureAccountKey),
        pipelineOptions,
      ).getContainerClient(container),
    );
  });

  afterAll(async () => {
    await Promise.all(proxies.map((proxy) => proxy.close()));
  });

  it('answers as S3 and Azure do when they refuse a request, and reports each fault', async () => {
    // Prepare: every request refused with a 503.
    const env = emulatorEnv();
    const plan = parseFaultPlan('rate=1,kinds=503');
    const s3 = await startFaultProxy({ store: 's3', target: env.s3Endpoint, plan });
    const azure = await startFaultProxy({
      store: 'azure',
      target: new URL(env.azureAccountUrl).origin,
      plan: parseFaultPlan('rate=1,kinds=throttle'),
    });
    proxies.push(s3, azure);
    // Act
    const fromS3 = await fetch(`${s3.url}/any-bucket/any-key`);
    const fromAzure = await fetch(`${azure.url}/devstoreaccount1/c/b`);
    // Assess
    expect(fromS3.status).toBe(503);
    expect(await fromS3.text()).toContain('<Code>SlowDown</Code>');
    expect(fromAzure.status).toBe(503);
    expect(fromAzure.headers.get('x-ms-error-code')).toBe('ServerBusy');
    expect(fromAzure.headers.get('retry-after')).toBe('1');
    expect(s3.counts()).toMatchObject({ requests: 1, faults: { '503': 1 } });
    expect(azure.counts()).toMatchObject({ requests: 1, faults: { throttle: 1 } });
  });

  it('cuts a response off mid-body (reset) or short of its length (truncate)', async () => {
    // Prepare
    const body = randomBytes(3 * MiB);
    await putObject(s3Direct, 'cut/obj', body);
    const env = emulatorEnv();
    const cut = async (kind: 'reset' | 'truncate') => {
      const proxy = await startFaultProxy({
        store: 's3',
        target: env.s3Endpoint,
        plan: parseFaultPlan(`rate=1,kinds=${kind}`),
      });
      proxies.push(proxy);
      const store = new S3ObjectStore(
        makeProjectS3Client({ ...emulatorVariables(), AWS_ENDPOINT_URL_S3: proxy.url }),
        s3Direct.container,
      );
      return readAll((await store.get('cut/obj')).body);
    };
    // Act, Assess: neither gives a short body as if it were whole.
    await expect(cut('reset')).rejects.toThrow();
    await expect(cut('truncate')).rejects.toThrow();
  });

  it.each([
    ['s3', 'azure'],
    ['azure', 's3'],
  ] as const)(
    'a task %s -> %s retried through faults of every kind (a quarter of requests) ends byte-identical',
    async (from, to) => {
      // Prepare
      const stores: Record<'s3' | 'azure', { direct: ObjectStore; faulty: ObjectStore }> = {
        s3: { direct: s3Direct, faulty: s3Faulty },
        azure: { direct: azureDirect, faulty: azureFaulty },
      };
      const key = `task/${from}.bin`;
      const body = randomBytes(40 * MiB + 17);
      await putObject(stores[from].direct, key, body);
      const [rule] = validateConfig({
        rules: [
          {
            name: 'faults',
            s3: { bucket: s3Direct.container },
            azure: {
              accountUrl: 'http://127.0.0.1:1/devstoreaccount1',
              container: azureDirect.container,
            },
            partSize: '5MiB',
            concurrency: 4,
          },
        ],
      }).rules;
      if (!rule) throw new Error('no rule');
      const task: CopyTask = {
        rule: 'faults',
        kind: 'created',
        sourceSide: from,
        sourceContainer: stores[from].direct.container,
        sourceKey: key,
        destinationContainer: stores[to].direct.container,
        destinationKey: key,
        eventTime: new Date().toISOString(),
        correlationId: `faults-${from}`,
      };
      const before = s3Proxy.counts().requests + azureProxy.counts().requests;
      // Act: as the queue would, run the task again after each retryable failure.
      let outcome: Awaited<ReturnType<typeof runCopyTask>> | undefined;
      let attempts = 0;
      while (!outcome && attempts < 30) {
        attempts += 1;
        try {
          outcome = await runCopyTask(task, {
            rule,
            source: stores[from].faulty,
            destination: stores[to].faulty,
            pullMemory: new PullMemory(),
          });
        } catch (error) {
          if (!(error instanceof ReplicatorError) || !error.retryable) throw error;
        }
      }
      // Assess
      expect(outcome?.action === 'copied' || outcome?.action === 'skipped').toBe(true);
      expect(sha(await readAll((await stores[to].direct.get(key)).body))).toBe(sha(body));
      const requests = s3Proxy.counts().requests + azureProxy.counts().requests - before;
      expect(requests).toBeGreaterThan(10);
      const injected = Object.values(s3Proxy.counts().faults).reduce((a, b) => a + b, 0);
      expect(injected).toBeGreaterThan(0);
    },
  );
});

describe('Function: startFaultProxy, with a link shape', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    await Promise.all(closers.map((close) => close()));
  });

  /** A tiny origin: `PUT` answers the body's length and SHA-256, `GET /<n>` sends n bytes of `data`. */
  const startOrigin = async (data: Buffer): Promise<string> => {
    const server = http.createServer((request, response) => {
      if (request.method === 'PUT') {
        const hash = createHash('sha256');
        let length = 0;
        request.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          length += chunk.length;
        });
        request.on('end', () => {
          response.writeHead(200, { 'content-type': 'application/json' });
          response.end(JSON.stringify({ length, sha256: hash.digest('hex') }));
        });
        return;
      }
      const size = Math.min(Number(request.url?.slice(1) || 0), data.length);
      response.writeHead(200, { 'content-length': size });
      response.end(data.subarray(0, size));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };

  const shaped = async (target: string, shape: { delayMs: number; bytesPerSecond?: number }) => {
    const proxy = await startFaultProxy({
      store: 's3',
      target,
      plan: parseFaultPlan('rate=0'),
      shape,
    });
    closers.push(() => proxy.close());
    return proxy;
  };

  const timed = async <T>(work: () => Promise<T>): Promise<{ value: T; seconds: number }> => {
    const started = performance.now();
    const value = await work();
    return { value, seconds: (performance.now() - started) / 1000 };
  };

  it('holds each request for the delay (one round trip) before it reaches the store', async () => {
    // Prepare
    const origin = await startOrigin(Buffer.from('hello'));
    const proxy = await shaped(origin, { delayMs: 150 });
    // Act
    const first = await timed(async () => (await fetch(`${proxy.url}/5`)).text());
    const second = await timed(async () => (await fetch(`${proxy.url}/5`)).text());
    // Assess: lower bounds only, on a shared machine.
    expect(first.value).toBe('hello');
    expect(second.value).toBe('hello');
    expect(first.seconds).toBeGreaterThanOrEqual(0.14);
    expect(second.seconds).toBeGreaterThanOrEqual(0.14);
    expect(proxy.counts()).toMatchObject({ requests: 2, faults: { latency: 0 } });
    expect(proxy.takePeakInFlight()).toBe(1);
  });

  it('caps a response body coming down, and passes it intact', async () => {
    // Prepare
    const data = randomBytes(2 * MiB);
    const proxy = await shaped(await startOrigin(data), { delayMs: 0, bytesPerSecond: 4 * MiB });
    // Act
    const { value, seconds } = await timed(async () =>
      Buffer.from(await (await fetch(`${proxy.url}/${data.length}`)).arrayBuffer()),
    );
    // Assess: 2 MiB at 4 MiB/s is 0.5 s, less the burst the cap lets through at once (30 ms)
    // and the last slice (5 ms).
    expect(sha(value)).toBe(sha(data));
    expect(seconds).toBeGreaterThanOrEqual(0.45);
  });

  it('caps a request body going up, and passes it intact', async () => {
    // Prepare
    const data = randomBytes(2 * MiB);
    const proxy = await shaped(await startOrigin(Buffer.alloc(0)), {
      delayMs: 20,
      bytesPerSecond: 4 * MiB,
    });
    // Act
    const { value, seconds } = await timed(async () => {
      const response = await fetch(`${proxy.url}/upload`, { method: 'PUT', body: data });
      return (await response.json()) as { length: number; sha256: string };
    });
    // Assess
    expect(value).toEqual({ length: data.length, sha256: sha(data) });
    expect(seconds).toBeGreaterThanOrEqual(0.45);
  });

  it('shapes the emulators too: a presigned S3 URL made for the proxy stays valid', async () => {
    // Prepare
    const env = emulatorEnv();
    const bucket = uniqueName('shaped');
    await makeS3Client().send(new CreateBucketCommand({ Bucket: bucket }));
    const data = randomBytes(MiB + 3);
    await putObject(new S3ObjectStore(makeS3Client(), bucket), 'shaped/obj', data);
    const proxy = await shaped(env.s3Endpoint, { delayMs: 30, bytesPerSecond: 8 * MiB });
    const store = new S3ObjectStore(
      makeProjectS3Client({ ...emulatorVariables(), AWS_ENDPOINT_URL_S3: proxy.url }),
      bucket,
    );
    // Act
    const url = await store.presignGet('shaped/obj', { expiresInSeconds: 60 });
    const { value, seconds } = await timed(async () =>
      Buffer.from(await (await fetch(url)).arrayBuffer()),
    );
    // Assess
    expect(url.startsWith(proxy.url)).toBe(true);
    expect(sha(value)).toBe(sha(data));
    expect(seconds).toBeGreaterThanOrEqual(0.1);
  });

  it('refuses a shape it cannot model', async () => {
    const plan = parseFaultPlan('rate=0');
    await expect(
      startFaultProxy({ store: 's3', target: 'http://127.0.0.1:1', plan, shape: { delayMs: -1 } }),
    ).rejects.toThrow(/delayMs/);
    await expect(
      startFaultProxy({
        store: 's3',
        target: 'http://127.0.0.1:1',
        plan,
        shape: { delayMs: 0, bytesPerSecond: 0 },
      }),
    ).rejects.toThrow(/bytesPerSecond/);
  });
});
