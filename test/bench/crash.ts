import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import {
  REPLICATOR_ACCESS_KEY_PREFIX,
  type RunningEmulators,
  startEmulators,
} from '../../src/local/emulators.ts';
import { seededRandom } from '../../src/local/fault-proxy.ts';
import type { TaskReport } from '../../src/observe/telemetry.ts';
import { queueCounts } from '../../src/ops/dead-letters.ts';
import type { PipelineQueues } from '../../src/ops/target.ts';
import { DELETE_HOLD_SECONDS } from '../../src/queue/timing.ts';
import { makeSqsClient } from '../../src/stores/clients.ts';
import { freePort } from '../support/ports.ts';

const require = createRequire(import.meta.url);

/** One task report of the replicator, as its process tells it (see crash-mirror.ts). */
export interface TaskFact {
  task: string | null;
  result: 'done' | 'continued' | 'failed';
  action?: string;
  /** A skip's reason, or what a continued task goes on with. */
  reason?: string;
  deadLettered?: boolean;
  error?: string;
}

/** The fact a task report tells, in a form that crosses a process boundary as JSON. */
export function taskFactOf(report: TaskReport): TaskFact {
  return {
    task: report.task?.sourceKey ?? null,
    result: report.result,
    ...(report.result === 'done' && { action: report.outcome.action }),
    ...(report.result === 'done' &&
      report.outcome.action === 'skipped' && { reason: report.outcome.reason }),
    ...(report.result === 'continued' && { reason: report.detail }),
    ...(report.result === 'failed' && {
      deadLettered: report.deadLettered,
      error: `${report.errorKind}: ${report.error}`,
    }),
  };
}

/** What was going on when the replicator was killed. */
export interface KillRecord {
  /** Milliseconds since the crash run started. */
  at: number;
  /** Tasks received by the copy function and not yet done. */
  copies: number;
  /** Event messages received by the plan function and not yet done. */
  plans: number;
  /** Event Grid deliveries the webhook was answering. */
  webhook: number;
  /** Multipart uploads the replicator had open on S3 (copies to S3 half staged). */
  uploads: number;
}

export interface CrashPlan {
  /** How many times the replicator is killed. */
  kills: number;
  /** Seeds the times between kills. */
  seed: number;
  /** Time between a replicator's start and its kill: from `minGapMs` to `maxGapMs`. */
  minGapMs: number;
  maxGapMs: number;
  /**
   * Every other kill waits (up to `maxGapMs` more) for the replicator to have a multipart
   * upload open on S3, so that some kills cut a copy between its parts and its commit.
   */
  aimAtUploads?: boolean;
}

/** The local mirror with its replicator in a process of its own, killed with SIGKILL by plan. */
export interface CrashingMirror {
  emulators: RunningEmulators;
  queues: PipelineQueues;
  onTask(listener: (fact: TaskFact) => void): void;
  /** What was going on at each kill so far. */
  kills: KillRecord[];
  /** Resolves once the planned kills are done and the last replicator is up. */
  killed: Promise<void>;
  /** Lines the emulators wrote on stderr (a delivery the Event Grid shim gave up on). */
  problems: string[];
  stop(): Promise<void>;
}

/**
 * Starts the emulators here and the replicator (crash-mirror.ts: the runners, the copy and
 * plan handlers, the webhook) in a child process, then kills that child with SIGKILL
 * `plan.kills` times at seeded random moments, starting a new one each time. The emulators
 * (the stores, the queues, the Event Grid shim that redelivers what the webhook did not
 * accept) keep running, as the clouds do when a Lambda invocation dies. A message received by
 * a killed invocation comes back after `visibilityTimeoutSeconds`.
 */
export async function startCrashingMirror(
  plan: CrashPlan,
  options: {
    visibilityTimeoutSeconds: number;
    deleteHoldSeconds?: number;
    /** Scales the Event Grid shim's retry schedule (10 s, 30 s, 1 min, …); default 1. */
    eventGridRetryScale?: number;
  },
): Promise<CrashingMirror> {
  const started = Date.now();
  const webhookPort = await freePort();
  const webhookSecret = randomBytes(18).toString('base64url');
  const problems: string[] = [];
  const emulators = await startEmulators({
    // What the emulators report on stderr: an Event Grid delivery given up, above all.
    log: (line) => {
      if (/fail|error/i.test(line)) problems.push(line);
    },
    eventGrid: {
      url: `http://127.0.0.1:${webhookPort}/eventgrid`,
      secret: webhookSecret,
      containers: ['replicated'],
      ...(options.eventGridRetryScale !== undefined && {
        retryScale: options.eventGridRetryScale,
      }),
    },
  });
  const { stop: _stop, eventGridPending: _pending, ...reachable } = emulators;
  const setup = JSON.stringify({
    emulators: reachable,
    webhookPort,
    webhookSecret,
    visibilityTimeoutSeconds: options.visibilityTimeoutSeconds,
    deleteHoldSeconds: options.deleteHoldSeconds ?? DELETE_HOLD_SECONDS,
  });
  const listeners: Array<(fact: TaskFact) => void> = [];
  let webhook = 0;
  let child: ChildProcess | undefined;
  let stopping = false;
  /** A replicator that exited by itself (not killed by plan): the run has failed. */
  let died: Error | undefined;
  const gone = (process_: ChildProcess) =>
    process_.exitCode !== null || process_.signalCode !== null;
  /** Waits for `process_` to exit, sending SIGKILL after `ms` (at once when `ms` is 0). */
  const ended = (process_: ChildProcess, signal: NodeJS.Signals, ms: number) =>
    new Promise<void>((resolve) => {
      if (gone(process_)) {
        resolve();
        return;
      }
      const timer = setTimeout(() => process_.kill('SIGKILL'), ms);
      process_.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      process_.kill(signal);
    });

  const startReplicator = () =>
    new Promise<PipelineQueues>((resolve, reject) => {
      const replicator = spawn(
        process.execPath,
        [
          '--import',
          pathToFileURL(require.resolve('tsx')).href,
          // It exits when this process goes away (its stdin closes).
          '--import',
          new URL('../../src/local/exit-with-parent.ts', import.meta.url).href,
          fileURLToPath(new URL('./crash-mirror.ts', import.meta.url)),
        ],
        { env: { ...process.env, S3AZ_CRASH_SETUP: setup }, stdio: ['pipe', 'pipe', 'pipe'] },
      );
      child = replicator;
      let stderr = '';
      replicator.stderr?.on('data', (chunk: Buffer) => {
        stderr = (stderr + chunk.toString()).slice(-2000);
      });
      const startTimer = setTimeout(() => {
        reject(new Error(`the replicator did not start in 60 s: ${stderr.trim()}`));
        replicator.kill('SIGKILL');
      }, 60_000);
      replicator.once('exit', (code, signal) => {
        clearTimeout(startTimer);
        if (signal !== 'SIGKILL' && !stopping) {
          died = new Error(`the replicator exited by itself (${code ?? signal}): ${stderr.trim()}`);
          reject(died);
        }
      });
      createInterface({ input: replicator.stdout as NodeJS.ReadableStream }).on('line', (text) => {
        let fact: Record<string, unknown>;
        try {
          fact = JSON.parse(text) as Record<string, unknown>;
        } catch {
          return;
        }
        if (fact.ready) {
          clearTimeout(startTimer);
          resolve(fact.queues as PipelineQueues);
        } else if (fact.webhook === 'start') webhook += 1;
        else if (fact.webhook === 'end') webhook = Math.max(0, webhook - 1);
        else if ('task' in fact)
          for (const listener of listeners) listener(fact as unknown as TaskFact);
      });
    });

  let queues: PipelineQueues;
  try {
    queues = await startReplicator();
  } catch (error) {
    await emulators.stop();
    throw error;
  }
  const sqs = makeSqsClient({
    AWS_ENDPOINT_URL_SQS: emulators.s3Endpoint,
    AWS_REGION: emulators.region,
    AWS_ACCESS_KEY_ID: emulators.accessKeyId,
    AWS_SECRET_ACCESS_KEY: emulators.secretAccessKey,
  });
  const s3 = new S3Client({
    endpoint: emulators.s3Endpoint,
    forcePathStyle: true,
    region: emulators.region,
    credentials: { accessKeyId: emulators.accessKeyId, secretAccessKey: emulators.secretAccessKey },
  });
  const kills: KillRecord[] = [];
  const random = seededRandom(plan.seed);
  const killed = (async () => {
    while (kills.length < plan.kills && !stopping) {
      const gap = plan.minGapMs + random() * (plan.maxGapMs - plan.minGapMs);
      // The random moment is the point of a crash test: not a wait for a condition.
      await new Promise((resolve) => setTimeout(resolve, gap));
      if (died) throw died;
      if (stopping) return;
      const openUploads = async () =>
        (
          (await s3.send(new ListMultipartUploadsCommand({ Bucket: 'replicated' }))).Uploads ?? []
        ).filter((upload) => (upload.Initiator?.ID ?? '').includes(REPLICATOR_ACCESS_KEY_PREFIX))
          .length;
      if (plan.aimAtUploads && kills.length % 2 === 1) {
        const until = Date.now() + plan.maxGapMs;
        while (Date.now() < until && (await openUploads()) === 0) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      const [tasks, events, uploads] = await Promise.all([
        queueCounts(sqs, queues.tasks),
        queueCounts(sqs, queues.events),
        openUploads(),
      ]);
      const record: KillRecord = {
        at: Date.now() - started,
        copies: tasks.inFlight,
        plans: events.inFlight,
        webhook,
        uploads,
      };
      if (died) throw died;
      if (child) await ended(child, 'SIGKILL', 0);
      webhook = 0;
      kills.push(record);
      if (stopping) return;
      queues = await startReplicator();
    }
  })();

  return {
    emulators,
    get queues() {
      return queues;
    },
    onTask(listener) {
      listeners.push(listener);
    },
    kills,
    killed,
    problems,
    async stop() {
      stopping = true;
      await killed.catch(() => undefined);
      if (child) await ended(child, 'SIGTERM', 10_000);
      await emulators.stop();
    },
  };
}
