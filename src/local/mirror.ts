import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { BlobServiceClient } from '@azure/storage-blob';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { createCopyHandler } from '../../handlers/copy.ts';
import { createEventGridHandler } from '../../handlers/eventgrid.ts';
import { createPlanHandler } from '../../handlers/plan.ts';
import { loadConfig, validateConfig } from '../config/load.ts';
import type { ReplicationConfig } from '../config/schema.ts';
import { OWN_CLIENT_REQUEST_ID_PREFIX } from '../core/metadata.ts';
import { Telemetry } from '../observe/telemetry.ts';
import { setupS3 } from '../ops/setup-s3.ts';
import { LOCAL_NOTIFICATION_ID_PREFIX, type PipelineQueues } from '../ops/target.ts';
import { buildRuntime, type Runtime } from '../runtime/runtime.ts';
import {
  awsClientSettings,
  type Environment,
  makeS3Client,
  makeSqsClient,
} from '../stores/clients.ts';
import { type RunningEmulators, startEmulators } from './emulators.ts';
import { type FaultPlan, type FaultProxy, startFaultProxy } from './fault-proxy.ts';
import { QueueRunner, type SqsHandler } from './queue-runner.ts';
import { readServerlessWiring } from './serverless-wiring.ts';

const WEBHOOK_SECRET_VARIABLE = 'S3AZ_LOCAL_WEBHOOK_SECRET';

export interface LocalMirrorOptions {
  s3Port?: number;
  azurePort?: number;
  /** The webhook's port (0: any free one). */
  webhookPort?: number;
  bucket?: string;
  container?: string;
  /** A configuration file instead of the default two-way rule between bucket and container. */
  configFile?: string;
  azuriteDataDir?: string;
  /** Seconds before a failed task is tried again (doubling); default 1 locally. */
  retryBaseSeconds?: number;
  /** How long a delete in doubt waits (default DELETE_HOLD_SECONDS, as deployed). */
  deleteHoldSeconds?: number;
  /**
   * Faults injected between the replicator and both stores (`--faults`); users' own requests
   * go to the emulators directly.
   */
  faults?: FaultPlan;
  /**
   * Emulators already running (started with `eventGrid` pointing at `webhookPort` with
   * `webhookSecret`): the mirror uses them and leaves them running when it stops, so that a
   * replicator killed and started again finds the stores and queues as it left them.
   */
  emulators?: RunningEmulators;
  /** The webhook's shared secret (default: a new one); must match running emulators' `eventGrid`. */
  webhookSecret?: string;
  /**
   * The queues' visibility timeout instead of serverless.yml's (90 minutes for tasks): how
   * soon the message of a killed invocation comes back.
   */
  visibilityTimeoutSeconds?: number;
  /** Told when the webhook starts and finishes answering a delivery. */
  onWebhook?: (phase: 'start' | 'end') => void;
}

export interface LocalMirror {
  emulators: RunningEmulators;
  webhookUrl: string;
  /** The shared secret Event Grid deliveries to the webhook carry (`x-s3az-secret`). */
  webhookSecret: string;
  config: ReplicationConfig;
  /** The URLs of the pipeline's four queues. */
  queues: PipelineQueues;
  runtime: Runtime;
  telemetry: Telemetry;
  /** The fault proxies in front of S3 and Azure, with `--faults`. */
  faults?: { s3: FaultProxy; azure: FaultProxy };
  stop(): Promise<void>;
}

async function createQueue(sqs: SQSClient, name: string, attributes: Record<string, string>) {
  const url = (await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes })))
    .QueueUrl;
  if (!url) throw new Error(`the local SQS did not create the queue ${name}`);
  const arn =
    (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] })))
      .Attributes?.QueueArn ?? '';
  return { url, arn };
}

function eventOf(request: http.IncomingMessage, body: string): APIGatewayProxyEventV2 {
  const url = new URL(request.url ?? '/', 'http://local');
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    queryStringParameters: Object.fromEntries(url.searchParams),
    requestContext: { http: { method: request.method ?? 'POST', path: url.pathname } },
    body,
    isBase64Encoded: false,
  } as unknown as APIGatewayProxyEventV2;
}

function sameAccount(a: string, b: string): boolean {
  const strip = (url: string) => url.replace(/\/+$/, '');
  return strip(a) === strip(b);
}

/**
 * The whole replicator on one machine: the emulators with their shims (S3 notifications to
 * the events queue, Event Grid deliveries to the webhook), the queues, functions and
 * environment as serverless.yml declares them, the `eventgrid` handler on a local HTTP port,
 * and the queue-fed handlers run by the SQS runner with Lambda's semantics.
 */
export async function startLocalMirror(options: LocalMirrorOptions = {}): Promise<LocalMirror> {
  const secret = options.webhookSecret ?? randomBytes(18).toString('base64url');
  let ready: (value: Runtime) => void = () => undefined;
  const runtimeReady = new Promise<Runtime>((resolve) => {
    ready = resolve;
  });
  const webhook = createEventGridHandler(() => runtimeReady);
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A watcher's failure is its own: it must not take the webhook down.
    const tell = (phase: 'start' | 'end') => {
      try {
        options.onWebhook?.(phase);
      } catch {}
    };
    request.on('end', () => {
      tell('start');
      webhook(eventOf(request, Buffer.concat(chunks).toString('utf8')))
        .finally(() => tell('end'))
        .then((result) => {
          response.writeHead(result.statusCode ?? 500, result.headers as http.OutgoingHttpHeaders);
          response.end(result.body ?? '');
        })
        .catch((error: unknown) => {
          response.writeHead(500, { 'content-type': 'application/json' });
          response.end(JSON.stringify({ error: (error as Error).message }));
        });
    });
  });
  await new Promise<void>((resolve) =>
    server.listen(options.webhookPort ?? 0, '127.0.0.1', resolve),
  );
  const webhookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/eventgrid`;

  // The Event Grid subscription covers the rules' containers only (subjectBeginsWith), and
  // leaves out the replicator's own writes (by their client request id), as the
  // subscriptions `s3az setup azure` makes for a real account do.
  const fromFile = options.configFile ? await loadConfig(options.configFile) : undefined;
  const containers = fromFile
    ? [...new Set(fromFile.rules.map((rule) => rule.azure.container))]
    : [options.container ?? 'replicated'];
  const emulators =
    options.emulators ??
    (await startEmulators({
      ...(options.s3Port !== undefined && { s3Port: options.s3Port }),
      ...(options.azurePort !== undefined && { azurePort: options.azurePort }),
      ...(options.azuriteDataDir !== undefined && { azuriteDataDir: options.azuriteDataDir }),
      eventGrid: {
        url: webhookUrl,
        secret,
        containers,
        skipClientRequestIdPrefix: OWN_CLIENT_REQUEST_ID_PREFIX,
      },
    }));
  // Emulators the caller started are the caller's to stop.
  const stopEmulators = () => (options.emulators ? Promise.resolve() : emulators.stop());
  const runners: QueueRunner[] = [];
  let faults: LocalMirror['faults'];
  try {
    if (options.faults) {
      faults = {
        s3: await startFaultProxy({
          store: 's3',
          target: emulators.s3Endpoint,
          plan: options.faults,
        }),
        azure: await startFaultProxy({
          store: 'azure',
          target: new URL(emulators.azureAccountUrl).origin,
          plan: { ...options.faults, seed: options.faults.seed + 1 },
        }),
      };
    }
    // The replicator reaches the stores through the fault proxies, when there are any.
    const azureAccountUrl = faults
      ? `${faults.azure.url}${new URL(emulators.azureAccountUrl).pathname}`
      : emulators.azureAccountUrl;
    const env: Environment = {
      AWS_ENDPOINT_URL_S3: faults?.s3.url ?? emulators.s3Endpoint,
      AWS_ENDPOINT_URL_SQS: emulators.s3Endpoint,
      AWS_REGION: emulators.region,
      // The replicator writes with a key of its own, so that the S3 events of its writes name
      // it as their principal, as they name a Lambda function's role on AWS.
      AWS_ACCESS_KEY_ID: emulators.replicatorAccessKeyId,
      AWS_SECRET_ACCESS_KEY: emulators.secretAccessKey,
      S3AZ_OWN_S3_PRINCIPALS: `AWS:${emulators.replicatorAccessKeyId}`,
      AZURE_STORAGE_CONNECTION_STRING: emulators.azureConnectionString.replace(
        emulators.azureAccountUrl,
        azureAccountUrl,
      ),
      [WEBHOOK_SECRET_VARIABLE]: secret,
      S3AZ_RETRY_BASE_SECONDS: String(options.retryBaseSeconds ?? 1),
      ...(options.deleteHoldSeconds !== undefined && {
        S3AZ_DELETE_HOLD_SECONDS: String(options.deleteHoldSeconds),
      }),
    };
    const sqs = makeSqsClient(env);
    const wiring = await readServerlessWiring();
    // Dead-letter queues first: a work queue's redrive policy names its queue's ARN.
    const ordered = [...wiring.queues].sort((a, b) => Number(!!a.redrive) - Number(!!b.redrive));
    const queues = new Map<string, { url: string; arn: string }>();
    for (const queue of ordered) {
      const deadLetter = queue.redrive && queues.get(queue.redrive.deadLetterQueue);
      queues.set(
        queue.logicalId,
        await createQueue(sqs, queue.logicalId, {
          ...((options.visibilityTimeoutSeconds ?? queue.visibilityTimeout) !== undefined && {
            VisibilityTimeout: String(options.visibilityTimeoutSeconds ?? queue.visibilityTimeout),
          }),
          ...(queue.redrive &&
            deadLetter && {
              RedrivePolicy: JSON.stringify({
                deadLetterTargetArn: deadLetter.arn,
                maxReceiveCount: queue.redrive.maxReceiveCount,
              }),
            }),
        }),
      );
    }
    for (const [name, value] of Object.entries(wiring.environment)) {
      if (name === 'NODE_OPTIONS') continue;
      if (typeof value === 'string') env[name] = value;
      else {
        const queue = queues.get(value.ref);
        if (!queue) throw new Error(`serverless.yml: ${name} refers to ${value.ref}, not a queue`);
        env[name] = queue.url;
      }
    }
    const eventsQueue = [...wiring.functions]
      .filter((fn) => fn.module === 'plan')
      .map((fn) => fn.sqs && queues.get(fn.sqs.queue))[0];
    if (!eventsQueue) throw new Error('serverless.yml: no queue feeds the plan function');

    const bucket = options.bucket ?? 'replicated';
    const container = options.container ?? 'replicated';
    const configured = fromFile
      ? fromFile
      : validateConfig({
          rules: [
            {
              name: 'local',
              s3: { bucket },
              azure: { accountUrl: emulators.azureAccountUrl, container },
              deletes: 'mirror',
              partSize: '8MiB',
            },
          ],
          eventGrid: { auth: { mode: 'shared-secret', secretEnv: WEBHOOK_SECRET_VARIABLE } },
        });
    const config: ReplicationConfig = {
      ...configured,
      rules: configured.rules.map((rule) =>
        sameAccount(rule.azure.accountUrl, emulators.azureAccountUrl)
          ? { ...rule, azure: { ...rule.azure, accountUrl: azureAccountUrl } }
          : rule,
      ),
    };
    // Setting up goes to the emulators directly, past any faults.
    const s3 = makeS3Client({ ...env, AWS_ENDPOINT_URL_S3: emulators.s3Endpoint });
    const blobs = BlobServiceClient.fromConnectionString(emulators.azureConnectionString);
    for (const rule of config.rules) {
      await s3.send(new CreateBucketCommand({ Bucket: rule.s3.bucket })).catch((error) => {
        if (!/BucketAlready/.test((error as Error).name)) throw error;
      });
      await blobs.getContainerClient(rule.azure.container).createIfNotExists();
    }
    // The buckets notify the events queue as `s3az setup s3` would set them up on AWS.
    await setupS3({
      rules: config.rules,
      queueArn: eventsQueue.arn,
      idPrefix: LOCAL_NOTIFICATION_ID_PREFIX,
      clientFor: () => s3,
    });

    const telemetry = new Telemetry(
      new Logger({ serviceName: 's3az-local', logLevel: 'SILENT' }),
      new Metrics({ namespace: 'S3AzureReplicatorLocal', serviceName: 's3az-local' }),
    );
    const runtime = await buildRuntime({ env, config, sqs, telemetry });
    ready(runtime);
    const get = () => runtimeReady;
    // While stopping, a receive in flight meets the emulators going away: not worth a line.
    let stopping = false;
    const onError = (error: unknown) => {
      if (stopping) return;
      console.error(`s3az local: ${error instanceof Error ? error.message : String(error)}`);
    };
    const factories: Record<string, (runtime: () => Promise<Runtime>) => SqsHandler> = {
      plan: createPlanHandler,
      copy: createCopyHandler,
    };
    // The runners stand in for Lambda's pollers, whose requests are AWS's work, not the
    // functions'. They send every request without per-call options, so their client can
    // resolve each command's middleware once (`cacheMiddleware`) instead of on every call.
    const pollers = new SQSClient({ ...awsClientSettings(env, 'SQS'), cacheMiddleware: true });
    for (const fn of wiring.functions) {
      if (!fn.sqs) continue;
      const factory = factories[fn.module];
      const queue = queues.get(fn.sqs.queue);
      if (!factory || !queue) {
        throw new Error(`serverless.yml: function ${fn.name} (${fn.module}) cannot run locally`);
      }
      runners.push(
        new QueueRunner({
          sqs: pollers,
          queueUrl: queue.url,
          handler: factory(get),
          functionName: fn.name,
          batchSize: fn.sqs.batchSize,
          batchingWindowSeconds: fn.sqs.maximumBatchingWindow,
          concurrency: fn.sqs.maximumConcurrency,
          timeoutSeconds: fn.timeoutSeconds,
          region: emulators.region,
          onError,
        }),
      );
    }
    for (const runner of runners) runner.start();
    return {
      emulators,
      webhookUrl,
      webhookSecret: secret,
      config,
      queues: {
        events: runtime.queueUrl('events'),
        eventsDeadLetter: runtime.queueUrl('eventsDeadLetter'),
        tasks: runtime.queueUrl('tasks'),
        tasksDeadLetter: runtime.queueUrl('tasksDeadLetter'),
      },
      runtime,
      telemetry,
      ...(faults && { faults }),
      async stop() {
        stopping = true;
        // The runners stop polling at once and the emulators stop alongside, as when Ctrl-C
        // reaches every process together, instead of after the runners' 1 s long polls.
        const polling = Promise.all(runners.map((runner) => runner.stop()));
        await Promise.all([polling, stopEmulators()]);
        await Promise.all([faults?.s3.close(), faults?.azure.close()]);
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  } catch (error) {
    await Promise.all(runners.map((runner) => runner.stop()));
    await Promise.all([faults?.s3.close(), faults?.azure.close()]);
    await stopEmulators();
    server.close();
    throw error;
  }
}
