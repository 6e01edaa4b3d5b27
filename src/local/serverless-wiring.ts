import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { DEFAULT_TUNING, timingVariables } from '../deploy/serverless-vars.ts';

/**
 * The deployment's wiring, read from serverless.yml so that the local mirror runs the same
 * functions on the same queues with the same settings as Lambda: which handler consumes which
 * queue, batch size and window, timeouts, the queues' visibility timeouts and redrive
 * policies, and the functions' environment (queue URLs by `Ref`).
 */
export interface ServerlessWiring {
  functions: FunctionWiring[];
  queues: QueueWiring[];
  /** provider.environment; `Ref`s name queues by logical id. */
  environment: Record<string, string | { ref: string }>;
}

export interface FunctionWiring {
  name: string;
  /** The handler module's name (`dist/handlers/plan.handler` -> `plan`). */
  module: string;
  timeoutSeconds: number;
  sqs?: {
    queue: string;
    batchSize: number;
    maximumBatchingWindow: number;
    /** Invocations at once (the event source's `maximumConcurrency`; Lambda's floor is 2). */
    maximumConcurrency: number;
  };
  http: boolean;
}

export interface QueueWiring {
  logicalId: string;
  visibilityTimeout?: number;
  redrive?: { deadLetterQueue: string; maxReceiveCount: number };
}

/** serverless.yml of this package (next to src/ or dist/, whichever runs). */
export function serverlessYmlPath(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    const candidate = join(directory, 'serverless.yml');
    if (existsSync(candidate)) return candidate;
    directory = dirname(directory);
  }
  throw new Error('serverless.yml was not found beside the package');
}

type Node = unknown;

/** The generated numbers serverless.yml refers to: timing, and the tuning defaults. */
type Generated = Record<'timing' | 'tuning', Record<string, number>>;

function resolve(value: Node, generated: Generated): Node {
  if (typeof value === 'string') {
    const whole = /^\$\{self:custom\.generated\.(timing|tuning)\.(\w+)\}$/.exec(value);
    if (whole?.[1] !== undefined && whole[2] !== undefined) {
      const number = generated[whole[1] as keyof Generated][whole[2]];
      if (number === undefined) {
        throw new Error(`serverless.yml: no ${whole[1]} value "${whole[2]}"`);
      }
      return number;
    }
    return value;
  }
  if (Array.isArray(value)) return value.map((item) => resolve(item, generated));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, resolve(item, generated)]),
    );
  }
  return value;
}

const record = (value: Node): Record<string, Node> =>
  value && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, Node>)
    : {};

function getAttLogicalId(value: Node): string | undefined {
  const att = record(value)['Fn::GetAtt'];
  return Array.isArray(att) && typeof att[0] === 'string' ? att[0] : undefined;
}

/** Reads and resolves the wiring of serverless.yml. */
export async function readServerlessWiring(path = serverlessYmlPath()): Promise<ServerlessWiring> {
  // Locally the stage's defaults: no --param reaches the mirror.
  const generated: Generated = {
    timing: timingVariables(),
    tuning: { ...DEFAULT_TUNING },
  };
  const document = record(resolve(parse(await readFile(path, 'utf8')), generated));
  const provider = record(document.provider);
  const functions: FunctionWiring[] = Object.entries(record(document.functions)).map(
    ([name, value]) => {
      const definition = record(value);
      const handler = String(definition.handler ?? '');
      const module = /([^/]+)\.[^.]+$/.exec(handler)?.[1] ?? name;
      const events = Array.isArray(definition.events) ? definition.events : [];
      const sqsEvent = events.map((event) => record(record(event).sqs)).find((sqs) => sqs.arn);
      const queue = sqsEvent && getAttLogicalId(sqsEvent.arn);
      return {
        name,
        module,
        timeoutSeconds: Number(definition.timeout ?? provider.timeout ?? 6),
        http: events.some((event) => record(event).httpApi !== undefined),
        ...(queue !== undefined && {
          sqs: {
            queue,
            batchSize: Number(sqsEvent?.batchSize ?? 10),
            maximumBatchingWindow: Number(sqsEvent?.maximumBatchingWindow ?? 0),
            maximumConcurrency: Number(sqsEvent?.maximumConcurrency ?? 5),
          },
        }),
      };
    },
  );
  const queues: QueueWiring[] = Object.entries(record(record(document.resources).Resources))
    .filter(([, resource]) => record(resource).Type === 'AWS::SQS::Queue')
    .map(([logicalId, resource]) => {
      const properties = record(record(resource).Properties);
      const redrive = record(properties.RedrivePolicy);
      const deadLetterQueue = getAttLogicalId(redrive.deadLetterTargetArn);
      return {
        logicalId,
        ...(properties.VisibilityTimeout !== undefined && {
          visibilityTimeout: Number(properties.VisibilityTimeout),
        }),
        ...(deadLetterQueue !== undefined && {
          redrive: { deadLetterQueue, maxReceiveCount: Number(redrive.maxReceiveCount ?? 1) },
        }),
      };
    });
  const environment: ServerlessWiring['environment'] = {};
  for (const [name, value] of Object.entries(record(provider.environment))) {
    const ref = record(value).Ref;
    if (typeof ref === 'string') environment[name] = { ref };
    else if (typeof value === 'string' || typeof value === 'number') {
      if (!String(value).includes('${')) environment[name] = String(value);
    }
  }
  return { functions, queues, environment };
}
