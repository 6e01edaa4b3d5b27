import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { ContainerClient } from '@azure/storage-blob';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { createCopyHandler } from '../../handlers/copy.ts';
import { createEventGridHandler } from '../../handlers/eventgrid.ts';
import { createPlanHandler } from '../../handlers/plan.ts';
import { validateConfig } from '../../src/config/load.ts';
import { QueueRunner } from '../../src/local/queue-runner.ts';
import { type TaskReport, Telemetry } from '../../src/observe/telemetry.ts';
import { buildRuntime, type Runtime } from '../../src/runtime/runtime.ts';
import type { Environment } from '../../src/stores/clients.ts';
import {
  emulatorEnv,
  emulatorVariables,
  makeBlobServiceClient,
  makeS3Client,
  makeSqsClient,
  queueDepth,
  uniqueName,
} from './emulators.ts';

export const WEBHOOK_SECRET_VARIABLE = 'S3AZ_TEST_WEBHOOK_SECRET';

export interface PipelineOptions {
  /** Rule fields other than name, s3.bucket, azure.accountUrl and azure.container. */
  rule?: Record<string, unknown>;
  /** Extra or replaced environment variables (a broken endpoint, a wrong key). */
  env?: Environment;
  maxReceives?: number;
  /** More rules, whole (the pipeline's own bucket and container are in `bucket`/`container`). */
  extraRules?: (names: { bucket: string; container: string; accountUrl: string }) => unknown[];
}

export interface Pipeline {
  bucket: string;
  container: ContainerClient;
  sqs: SQSClient;
  runtime: Runtime;
  queues: { events: string; eventsDeadLetter: string; tasks: string; tasksDeadLetter: string };
  reports: TaskReport[];
  webhookSecret: string;
  runners: { plan: QueueRunner; copy: QueueRunner };
  /** Puts a message on the events queue, as S3 or the webhook would. */
  sendEvent(body: string): Promise<void>;
  /** Runs the plan and copy handlers, as Lambda would, until both queues are empty. */
  settle(deadlineMs?: number): Promise<void>;
  /** Calls the real Event Grid handler with an API Gateway HTTP API event. */
  webhook(request: {
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    query?: Record<string, string>;
  }): Promise<{ statusCode: number; body: string; headers: Record<string, string> }>;
  /** Every message now in a queue (received and left to come back). */
  peek(queueUrl: string): Promise<Message[]>;
  copies(): number;
}

async function createQueue(sqs: SQSClient, name: string, attributes: Record<string, string>) {
  const out = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
  if (!out.QueueUrl) throw new Error(`CreateQueue ${name} returned no URL: ${JSON.stringify(out)}`);
  return out.QueueUrl;
}

async function queueArn(sqs: SQSClient, url: string): Promise<string> {
  const out = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
  );
  return out.Attributes?.QueueArn ?? '';
}

/**
 * A whole pipeline on the emulators: a bucket, a container, the four queues with the redrive
 * policies serverless.yml declares, one rule, the runtime, and the real handlers run by the
 * local runner with Lambda's SQS semantics.
 */
export async function startPipeline(options: PipelineOptions = {}): Promise<Pipeline> {
  const sqs = makeSqsClient();
  const bucket = uniqueName('pipe');
  await makeS3Client().send(new CreateBucketCommand({ Bucket: bucket }));
  const container = makeBlobServiceClient().getContainerClient(uniqueName('pipe'));
  await container.create();

  const maxReceives = options.maxReceives ?? 3;
  const eventsDeadLetter = await createQueue(sqs, uniqueName('events-dlq'), {});
  const tasksDeadLetter = await createQueue(sqs, uniqueName('tasks-dlq'), {});
  const redrive = async (deadLetterUrl: string) =>
    JSON.stringify({
      deadLetterTargetArn: await queueArn(sqs, deadLetterUrl),
      maxReceiveCount: maxReceives,
    });
  // Short visibility: a crashed invocation's batch comes back quickly in tests.
  const events = await createQueue(sqs, uniqueName('events'), {
    VisibilityTimeout: '2',
    RedrivePolicy: await redrive(eventsDeadLetter),
  });
  const tasks = await createQueue(sqs, uniqueName('tasks'), {
    VisibilityTimeout: '2',
    RedrivePolicy: await redrive(tasksDeadLetter),
  });

  const webhookSecret = uniqueName('secret');
  const variables = emulatorVariables();
  const env: Environment = {
    ...variables,
    AWS_ENDPOINT_URL_SQS: variables.AWS_ENDPOINT_URL_S3,
    S3AZ_EVENTS_QUEUE_URL: events,
    S3AZ_EVENTS_DLQ_URL: eventsDeadLetter,
    S3AZ_TASKS_QUEUE_URL: tasks,
    S3AZ_TASKS_DLQ_URL: tasksDeadLetter,
    S3AZ_RETRY_BASE_SECONDS: '0',
    S3AZ_MAX_RECEIVES: String(maxReceives),
    // A delete in doubt waits a second here, not five minutes.
    S3AZ_DELETE_HOLD_SECONDS: '1',
    [WEBHOOK_SECRET_VARIABLE]: webhookSecret,
    // The replicator writes with its own key, as `s3az local` does, so that S3 events tell
    // its writes from the tests' (which use the users' key).
    AWS_ACCESS_KEY_ID: emulatorEnv().replicatorAccessKeyId,
    S3AZ_OWN_S3_PRINCIPALS: `AWS:${emulatorEnv().replicatorAccessKeyId}`,
    ...options.env,
  };
  const {
    s3: s3Fields = {},
    azure: azureFields = {},
    ...ruleFields
  } = (options.rule ?? {}) as { s3?: object; azure?: object };
  const config = validateConfig({
    rules: [
      {
        name: 'mirror',
        s3: { bucket, ...s3Fields },
        azure: {
          accountUrl: emulatorEnv().azureAccountUrl,
          container: container.containerName,
          ...azureFields,
        },
        partSize: '5MiB',
        ...ruleFields,
      },
      ...(options.extraRules?.({
        bucket,
        container: container.containerName,
        accountUrl: emulatorEnv().azureAccountUrl,
      }) ?? []),
    ],
    eventGrid: { auth: { mode: 'shared-secret', secretEnv: WEBHOOK_SECRET_VARIABLE } },
  });
  const telemetry = new Telemetry(
    new Logger({ serviceName: 'test', logLevel: 'SILENT' }),
    new Metrics({ namespace: 'test', serviceName: 'test' }),
  );
  const reports: TaskReport[] = [];
  telemetry.onTask((report) => reports.push(report));
  const runtime = await buildRuntime({ env, config, sqs, telemetry });
  const get = () => Promise.resolve(runtime);
  const plan = new QueueRunner({
    sqs,
    queueUrl: events,
    handler: createPlanHandler(get),
    functionName: 'plan',
    batchSize: 10,
    timeoutSeconds: 60,
  });
  const copy = new QueueRunner({
    sqs,
    queueUrl: tasks,
    handler: createCopyHandler(get),
    functionName: 'copy',
    batchSize: 5,
    timeoutSeconds: 900,
  });
  const eventgrid = createEventGridHandler(get);

  const queued = (url: string) => queueDepth(sqs, url);

  return {
    bucket,
    container,
    sqs,
    runtime,
    queues: { events, eventsDeadLetter, tasks, tasksDeadLetter },
    reports,
    webhookSecret,
    runners: { plan, copy },
    async sendEvent(body) {
      await sqs.send(new SendMessageCommand({ QueueUrl: events, MessageBody: body }));
    },
    async settle(deadlineMs = 30_000) {
      const deadline = Date.now() + deadlineMs;
      for (;;) {
        const handled = (await plan.pollOnce(0)) + (await copy.pollOnce(0));
        if (handled === 0 && (await queued(events)) === 0 && (await queued(tasks)) === 0) return;
        if (Date.now() > deadline) throw new Error('the pipeline did not settle in time');
        if (handled === 0) await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    async webhook(request) {
      const event = {
        version: '2.0',
        routeKey: '$default',
        rawPath: '/eventgrid',
        rawQueryString: new URLSearchParams(request.query ?? {}).toString(),
        headers: { 'content-type': 'application/json', ...request.headers },
        ...(request.query && { queryStringParameters: request.query }),
        requestContext: {
          http: { method: request.method ?? 'POST', path: '/eventgrid' },
        },
        body: request.body ?? '',
        isBase64Encoded: false,
      } as unknown as APIGatewayProxyEventV2;
      const result = await eventgrid(event);
      return {
        statusCode: result.statusCode ?? 0,
        body: String(result.body ?? ''),
        headers: (result.headers ?? {}) as Record<string, string>,
      };
    },
    async peek(queueUrl) {
      const out = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          MessageAttributeNames: ['All'],
          AttributeNames: ['All'],
          VisibilityTimeout: 0,
        }),
      );
      return out.Messages ?? [];
    },
    copies() {
      return reports.filter(
        (report) => report.result === 'done' && report.outcome.action === 'copied',
      ).length;
    },
  };
}
