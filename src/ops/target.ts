import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { validateConfig } from '../config/load.ts';
import type { ReplicationConfig } from '../config/schema.ts';
import { UsageError } from '../errors.ts';
import { awsClientSettings, type Environment, makeSqsClient } from '../stores/aws-settings.ts';

/** The four queues of a deployed (or local) replicator. */
export interface PipelineQueues {
  events: string;
  eventsDeadLetter: string;
  tasks: string;
  tasksDeadLetter: string;
}

export type QueueName = keyof PipelineQueues;

/** The dead-letter queues and the queue each one's messages came from. */
export const DEAD_LETTER_QUEUES = [
  { deadLetter: 'eventsDeadLetter', source: 'events', name: 'events' },
  { deadLetter: 'tasksDeadLetter', source: 'tasks', name: 'tasks' },
] as const;

/** What an operations command works on: a deployed stack, or a running `s3az local`. */
export interface OpsTarget {
  /** For messages: `stack s3-azure-replicator-dev (us-east-1)` or `the local mirror (port 4566)`. */
  name: string;
  /** The CloudFormation stack's name; absent for the local mirror. */
  stackName?: string;
  sqs: SQSClient;
  queues: PipelineQueues;
  /** The environment AWS clients of this target are built from (region, endpoint, keys). */
  env: Environment;
  /** The local mirror's configuration, store environment and state file; absent for a stack. */
  local?: { config: ReplicationConfig; env: Environment; statePath: string };
}

export interface TargetOptions {
  stack?: string;
  stage?: string;
  region?: string;
  /** `true` (default port) or the S3/SQS port of a running `s3az local`. */
  local?: boolean | string;
}

/** The ids of the local mirror's bucket notifications start so (`s3az-<stack>-` on AWS). */
export const LOCAL_NOTIFICATION_ID_PREFIX = 's3az-local-';

/** serverless.yml's service name: the stack of a stage is `<service>-<stage>`. */
export const SERVICE_NAME = 's3-azure-replicator';
const DEFAULT_LOCAL_PORT = 4566;

/** The stack's outputs that hold the queue URLs (serverless.yml, `Outputs`). */
const QUEUE_OUTPUTS: Record<QueueName, string> = {
  events: 'EventsQueueUrl',
  eventsDeadLetter: 'EventsDeadLetterQueueUrl',
  tasks: 'TasksQueueUrl',
  tasksDeadLetter: 'TasksDeadLetterQueueUrl',
};

/** What a running `s3az local` leaves for operations commands in other terminals. */
export interface LocalState {
  pid: number;
  s3Endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  azureConnectionString: string;
  queues: PipelineQueues;
  config: unknown;
  /** Per rule, the last change the mirror replicated (for `s3az status`). */
  lastChanges?: Record<
    string,
    { lastAt: string; lastKey: string; lastAction: string; latencyMs?: number }
  >;
}

/** Where `s3az local` on `port` keeps its state while it runs (removed when it stops). */
export function localStatePath(port: number): string {
  return join(tmpdir(), `s3az-local-${port}.json`);
}

/** Writes the state file of a local mirror, readable by this user only (it holds keys). */
export async function writeLocalState(
  port: number,
  state: LocalState,
): Promise<() => Promise<void>> {
  const path = localStatePath(port);
  await writeFile(path, `${JSON.stringify(state)}\n`, { mode: 0o600 });
  return () => rm(path, { force: true });
}

async function localTarget(portText: string | true): Promise<OpsTarget> {
  const port = portText === true ? DEFAULT_LOCAL_PORT : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`--local: "${String(portText)}" is not a port number`);
  }
  const path = localStatePath(port);
  let state: LocalState;
  try {
    state = JSON.parse(await readFile(path, 'utf8')) as LocalState;
  } catch {
    throw new UsageError(
      `no local mirror runs on port ${port} (no ${path}); start one with "npx s3az local" in another terminal`,
    );
  }
  const env: Environment = {
    AWS_ENDPOINT_URL_SQS: state.s3Endpoint,
    AWS_ENDPOINT_URL_S3: state.s3Endpoint,
    AWS_REGION: state.region,
    AWS_ACCESS_KEY_ID: state.accessKeyId,
    AWS_SECRET_ACCESS_KEY: state.secretAccessKey,
    AZURE_STORAGE_CONNECTION_STRING: state.azureConnectionString,
  };
  const target: OpsTarget = {
    name: `the local mirror (port ${port})`,
    sqs: makeSqsClient(env),
    queues: state.queues,
    env,
    local: { config: validateConfig(state.config), env, statePath: path },
  };
  await checkReachable(target);
  return target;
}

/**
 * The outputs of a CloudFormation stack, and how messages name it (`stack <name> (<region>)`).
 * A stack that does not exist is a UsageError saying how to name it; `also` adds to that hint.
 */
export async function stackOutputs(
  stackName: string,
  env: Environment,
  also = '',
): Promise<{ name: string; outputs: Map<string, string> }> {
  const settings = awsClientSettings(env, 'CLOUDFORMATION');
  const name = `stack ${stackName} (${settings.region})`;
  try {
    const out = await new CloudFormationClient(settings).send(
      new DescribeStacksCommand({ StackName: stackName }),
    );
    const outputs = new Map(
      (out.Stacks?.[0]?.Outputs ?? []).map((output) => [
        output.OutputKey ?? '',
        output.OutputValue ?? '',
      ]),
    );
    return { name, outputs };
  } catch (error) {
    const message = (error as Error).message ?? String(error);
    if (/does not exist/i.test(message)) {
      throw new UsageError(
        `${name} does not exist; name it with --stack, or --stage and --region as deployed${also}`,
      );
    }
    throw new UsageError(`${name}: ${message.split('\n')[0]}`, { cause: error });
  }
}

async function stackTarget(options: TargetOptions, env: Environment): Promise<OpsTarget> {
  const stackName = options.stack ?? `${SERVICE_NAME}-${options.stage ?? 'dev'}`;
  const targetEnv: Environment = {
    ...env,
    ...(options.region !== undefined && { AWS_REGION: options.region }),
  };
  const { name, outputs } = await stackOutputs(stackName, targetEnv);
  const queues = {} as PipelineQueues;
  for (const [queue, output] of Object.entries(QUEUE_OUTPUTS) as [QueueName, string][]) {
    const url = outputs.get(output);
    if (!url) {
      throw new UsageError(
        `${name} has no output ${output}: is it an s3-azure-replicator stack, deployed with this version?`,
      );
    }
    queues[queue] = url;
  }
  const target: OpsTarget = {
    name,
    stackName,
    sqs: makeSqsClient(targetEnv),
    queues,
    env: targetEnv,
  };
  await checkReachable(target);
  return target;
}

/**
 * The stack (`--stack`, or `--stage`/`--region` as deployed) or the local mirror (`--local`)
 * an operations command works on. A wrong stack, region, port or queue is a UsageError that
 * names it.
 */
export async function resolveTarget(
  options: TargetOptions,
  env: Environment = process.env,
): Promise<OpsTarget> {
  if (options.local !== undefined && options.local !== false) {
    if (options.stack !== undefined || options.stage !== undefined) {
      throw new UsageError('--local works on the local mirror: leave out --stack and --stage');
    }
    return localTarget(options.local);
  }
  return stackTarget(options, env);
}

/** Fails with one line naming the queue when a queue of the target cannot be reached. */
async function checkReachable(target: OpsTarget): Promise<void> {
  const url = target.queues.tasksDeadLetter;
  try {
    await target.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
    );
  } catch (error) {
    const detail = ((error as Error).message ?? String(error)).split('\n')[0];
    throw new UsageError(`${target.name}: the queue ${url} cannot be reached (${detail})`, {
      cause: error,
    });
  }
}

/** The ARN of the target's events queue, where S3 notifications go. */
export async function eventsQueueArn(target: OpsTarget): Promise<string> {
  const out = await target.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: target.queues.events, AttributeNames: ['QueueArn'] }),
  );
  const arn = out.Attributes?.QueueArn;
  if (!arn) throw new UsageError(`${target.name}: the events queue has no ARN`);
  return arn;
}
