import {
  CreateQueueCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { validateConfig } from '../../src/config/load.ts';
import { PullMemory } from '../../src/copy/pull-memory.ts';
import { formatBytes, parseSize } from '../../src/core/range-plan.ts';
import type { CopyTask } from '../../src/core/route.ts';
import { recordOf } from '../../src/local/queue-runner.ts';
import {
  parseTaskMessage,
  processTaskRecord,
  type TaskRecordDependencies,
  TimeBudgetExceededError,
} from '../../src/queue/task-record.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { makeBlobServiceClient, makeS3Client, makeSqsClient } from '../../src/stores/clients.ts';
import type { ObjectStore } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import type { Cleanup } from './lifecycle.ts';
import { createRandomSource, table } from './memory.ts';
import { DIRECTIONS, type Direction } from './model.ts';
import { readOptions } from './options.ts';
import { sourceState } from './s3az.ts';
import { startBenchStack } from './stack.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const CONTAINER = 'bench-resume';
const RULE = { partSize: '8MiB', concurrency: 4 } as const;
/** The acceptance: at least this many continuations, and bytes sent / size at most this. */
const MIN_CONTINUATIONS = 3;
const MAX_SENT_RATIO = 1.05;
/** Runs the calibrated budget aims at: more than the 4 needed, for a copy faster than measured. */
const TARGET_RUNS = 6;
/** Size of the copy that measures the speed the budget is derived from. */
const CALIBRATION_SIZE = 256 * MiB;
/** No run may be shorter: a run also reads both sides and lists what is staged. */
const MIN_BUDGET_SECONDS = 1;
/** A run of the loop beyond this is a copy that does not finish. */
const MAX_RUNS = 200;

const USAGE = `usage: npm run bench -- resume [--size 2GiB] [--budget <seconds>] [--json]

Copies a --size object (default 2 GiB) Azure -> S3 and S3 -> Azure through processTaskRecord, as
the copy function does: each run gets a time budget (its signal aborts with TimeBudgetExceededError),
the stopped copy comes back on a local tasks queue as a continuation, and the loop runs it again
until it is copied. Without --budget, the budget is 1/${TARGET_RUNS} of the time a full copy would take at the
speed of a ${formatBytes(CALIBRATION_SIZE)} calibration copy. Acceptance: >= ${MIN_CONTINUATIONS} continuations, bytes
sent / size <= ${MAX_SENT_RATIO}, and the copy byte-identical (SHA-256). --json prints the results as JSON
on stdout; progress goes to stderr.`;

export interface ResumeOptions {
  size: number;
  /** Seconds a run may take; undefined: calibrated. */
  budgetSeconds: number | undefined;
  json: boolean;
}

/** One direction's resumed copy. */
export interface ResumeResult {
  direction: Direction;
  size: number;
  budgetSeconds: number;
  /** MiB/s of the calibration copy (when the budget was calibrated). */
  calibrationMibPerSecond?: number;
  transfer: string;
  /** `copied`, or `skipped up-to-date` when a run stopped in its commit had committed. */
  endedAs: string;
  runs: number;
  continuations: number;
  /** Sizes of the parts (and single writes) the destination accepted, summed. */
  bytesSent: number;
  /** bytesSent / size: the acceptance's measure. */
  sentRatio: number;
  /** Parts staged by calls the budget cut short, found listed by the next run, summed. */
  bytesCutButStaged: number;
  /** (bytesSent + bytesCutButStaged) / size: what the destination took in, at least. */
  writtenRatio: number;
  /** Bytes of every staging call started, including those the budget cut short. */
  bytesAttempted: number;
  /** From the first run's start to the last run's end. */
  seconds: number;
  /** Seconds of each run, and what it staged. */
  perRun: Array<{ seconds: number; outcome: string; bytesSent: number }>;
  identical: boolean;
  checks: {
    continuations: boolean;
    sentRatio: boolean;
    writtenRatio: boolean;
    identical: boolean;
  };
}

export function parseResumeOptions(args: readonly string[]): ResumeOptions {
  const options: ResumeOptions = { size: 2 * GiB, budgetSeconds: undefined, json: false };
  readOptions(args, (name, { value }) => {
    if (name === '--json') options.json = true;
    else if (name === '--size') {
      options.size = parseSize(value());
      if (options.size < 1) throw new Error('--size must be at least 1 byte');
    } else if (name === '--budget') {
      const seconds = Number(value());
      if (!Number.isFinite(seconds) || seconds <= 0)
        throw new Error('--budget must be a positive number of seconds');
      options.budgetSeconds = seconds;
    } else if (name === '--help' || name === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else throw new Error(`unknown option "${name}"\n${USAGE}`);
  });
  return options;
}

/**
 * Wraps a destination store to count the bytes it accepted: the `size` of every staged part
 * (Put Block, UploadPart from a buffer or a stream, Put Block From URL) and single writes
 * (`sent`). A call the budget cut short may still have been staged by the store (the request
 * was done when the client gave up on it); the next run finds that part listed and keeps it:
 * `cutButStaged` counts each such part once, from what `listStaged` returns. `attempted` counts
 * every call started, including those cut short.
 */
function countingBytes<T extends ObjectStore>(store: T) {
  const counts = { sent: 0, cutButStaged: 0, attempted: 0 };
  /** Parts known staged, by upload id and part number: returned by a call, or credited. */
  const known = new Set<string>();
  const keyOf = (upload: unknown, partNumber: number) =>
    `${(upload as { uploadId?: string }).uploadId ?? ''}:${partNumber}`;
  const requested = (property: string | symbol, args: unknown[]): number => {
    if (property === 'stagePart') return (args[2] as Buffer).length;
    if (property === 'put') return (args[1] as Buffer).length;
    if (property === 'stagePartStream') return args[3] as number;
    if (property === 'stagePartFromUrl') {
      const range = args[3] as { start: number; end: number };
      return range.end - range.start + 1;
    }
    if (property === 'putFromUrl') return args[2] as number;
    return 0;
  };
  const wrapped = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      const call = value as (...a: unknown[]) => Promise<unknown>;
      if (
        property === 'stagePart' ||
        property === 'stagePartStream' ||
        property === 'stagePartFromUrl'
      ) {
        return async (...args: unknown[]) => {
          counts.attempted += requested(property, args);
          const part = (await call.apply(target, args)) as { size: number; partNumber: number };
          counts.sent += part.size;
          known.add(keyOf(args[0], part.partNumber));
          return part;
        };
      }
      if (property === 'put' || property === 'putFromUrl') {
        return async (...args: unknown[]) => {
          const bytes = requested(property, args);
          counts.attempted += bytes;
          const result = await call.apply(target, args);
          counts.sent += bytes;
          return result;
        };
      }
      if (property === 'listStaged') {
        return async (...args: unknown[]) => {
          const parts = (await call.apply(target, args)) as Array<{
            partNumber: number;
            size: number;
          }>;
          for (const part of parts) {
            const key = keyOf(args[0], part.partNumber);
            if (known.has(key)) continue;
            known.add(key);
            counts.cutButStaged += part.size;
          }
          return parts;
        };
      }
      return value.bind(target);
    },
  });
  return { store: wrapped, counts };
}

/** Receives the next message of the queue as Lambda would hand it over. */
async function nextRecord(sqs: SQSClient, queueUrl: string): Promise<SQSRecord> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 1,
        WaitTimeSeconds: 5,
        AttributeNames: ['All'],
      }),
    );
    const message = out.Messages?.[0];
    if (!message) continue;
    return recordOf(message, 'arn:aws:sqs:us-east-1:000000000000:bench-tasks', 'us-east-1');
  }
  throw new Error('the tasks queue stayed empty: the continuation did not come back');
}

const fmt = (seconds: number) => seconds.toFixed(2);

/** `npm run bench -- resume`: see {@link USAGE}. */
export async function runResume(args: readonly string[], cleanup: Cleanup): Promise<void> {
  const options = parseResumeOptions(args);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const source = sourceState();
  log('starting the emulators...');
  const stack = await startBenchStack(cleanup, CONTAINER);
  const { stores } = stack;
  const env: Record<string, string> = { ...stack.env };
  const s3 = new S3ObjectStore(makeS3Client(env), CONTAINER);
  const azure = new AzureBlobObjectStore(
    (await makeBlobServiceClient(undefined, env)).getContainerClient(CONTAINER),
  );
  const sqs = makeSqsClient({ ...env, AWS_ENDPOINT_URL_SQS: env.AWS_ENDPOINT_URL_S3 });
  const createQueue = async (name: string, attributes: Record<string, string> = {}) =>
    (await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes })))
      .QueueUrl ?? '';
  // Long enough that a message is not received again while its run is still going.
  const queueUrl = await createQueue('bench-tasks', { VisibilityTimeout: '900' });
  const deadLetterQueueUrl = await createQueue('bench-tasks-dlq');
  const rules = validateConfig({
    rules: [
      {
        name: 'r',
        s3: { bucket: CONTAINER },
        azure: { accountUrl: stack.emulators.azureAccountUrl, container: CONTAINER },
        ...RULE,
      },
    ],
  }).rules;
  const storeOf = { s3, azure };

  /**
   * Copies `key` from `from` through the tasks queue, each run within `budgetMs` (none:
   * unlimited), until the copy is done.
   */
  const copyThroughQueue = async (
    direction: Direction,
    key: string,
    budgetMs: number | undefined,
  ) => {
    const { source: from, destination: to } = DIRECTIONS[direction];
    const counting = countingBytes(storeOf[to]);
    const dependencies: TaskRecordDependencies = {
      sqs,
      queueUrl,
      deadLetterQueueUrl,
      rules,
      storesFor: () => ({ source: storeOf[from], destination: counting.store }),
      pullMemory: new PullMemory(),
    };
    const task: CopyTask = {
      rule: 'r',
      kind: 'created',
      sourceSide: from,
      sourceContainer: CONTAINER,
      sourceKey: key,
      destinationContainer: CONTAINER,
      destinationKey: key,
      eventTime: new Date().toISOString(),
      correlationId: `bench-${direction}-${Date.now()}`,
    };
    await sqs.send(
      new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(task) }),
    );
    const perRun: ResumeResult['perRun'] = [];
    const started = performance.now();
    for (;;) {
      if (perRun.length >= MAX_RUNS)
        throw new Error(`${direction}: not copied after ${MAX_RUNS} runs`);
      const record = await nextRecord(sqs, queueUrl);
      const count = parseTaskMessage(record.body).continuation?.count ?? 0;
      if (count !== perRun.length) {
        throw new Error(`${direction}: run ${perRun.length + 1} received continuation ${count}`);
      }
      const budget = new AbortController();
      const timer =
        budgetMs === undefined
          ? undefined
          : setTimeout(() => budget.abort(new TimeBudgetExceededError()), budgetMs);
      const runStarted = performance.now();
      const sentBefore = counting.counts.sent;
      let outcome: Awaited<ReturnType<typeof processTaskRecord>>;
      try {
        outcome = await processTaskRecord(record, dependencies, budget.signal);
      } catch (error) {
        throw new Error(
          `${direction}: run ${perRun.length + 1} failed: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
      } finally {
        clearTimeout(timer);
      }
      // Lambda deletes a record its invocation succeeded on; a continuation is a new message.
      await sqs.send(
        new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: record.receiptHandle }),
      );
      const run = {
        seconds: (performance.now() - runStarted) / 1000,
        outcome: typeof outcome === 'string' ? outcome : outcome.action,
        bytesSent: counting.counts.sent - sentBefore,
      };
      perRun.push(run);
      log(
        `  run ${perRun.length}: ${run.outcome} after ${fmt(run.seconds)} s, ${formatBytes(run.bytesSent)} staged (total ${formatBytes(counting.counts.sent)})`,
      );
      if (outcome === 'continued') continue;
      const done = {
        perRun,
        seconds: (performance.now() - started) / 1000,
        counts: counting.counts,
      };
      if (typeof outcome === 'object' && outcome.action === 'copied') {
        return { ...done, transfer: outcome.transfer, endedAs: 'copied' };
      }
      // The budget can cut a run short during its commit, after the store committed: that run
      // is continued, and the next finds the copy done. The copy is complete all the same.
      if (
        typeof outcome === 'object' &&
        outcome.action === 'skipped' &&
        outcome.reason === 'up-to-date' &&
        perRun.length > 1
      ) {
        return { ...done, transfer: 'n/a', endedAs: 'skipped up-to-date' };
      }
      throw new Error(`${direction}: run ${perRun.length} ended ${JSON.stringify(outcome)}`);
    }
  };

  const order: Direction[] = ['azure-to-s3', 's3-to-azure'];
  const results: ResumeResult[] = [];
  for (const direction of order) {
    const { source: from, destination: to, label } = DIRECTIONS[direction];
    const key = `resume/${direction}.bin`;
    const calibrationKey = `resume/${direction}-calibration.bin`;
    const remove = async () => {
      for (const each of [key, calibrationKey]) {
        await stores.delete(from, each).catch(() => undefined);
        await stores.delete(to, each).catch(() => undefined);
      }
    };
    cleanup.add(remove);

    let budgetSeconds = options.budgetSeconds;
    let calibrationMibPerSecond: number | undefined;
    if (budgetSeconds === undefined) {
      const size = Math.min(CALIBRATION_SIZE, options.size);
      log(`${label}: calibrating with a ${formatBytes(size)} copy in one run...`);
      await createRandomSource(stores, from, calibrationKey, size);
      const calibration = await copyThroughQueue(direction, calibrationKey, undefined);
      calibrationMibPerSecond = size / MiB / calibration.seconds;
      budgetSeconds = Math.max(
        MIN_BUDGET_SECONDS,
        options.size / MiB / calibrationMibPerSecond / TARGET_RUNS,
      );
      await stores.delete(from, calibrationKey);
      await stores.delete(to, calibrationKey);
      log(
        `${label}: ${calibrationMibPerSecond.toFixed(1)} MiB/s, so a budget of ${fmt(budgetSeconds)} s a run`,
      );
    }

    log(`${label}: creating a ${formatBytes(options.size)} source on ${from}...`);
    const sha256 = await createRandomSource(stores, from, key, options.size);
    log(`${label}: copying through the tasks queue, ${fmt(budgetSeconds)} s a run...`);
    const copied = await copyThroughQueue(direction, key, budgetSeconds * 1000);
    log(`${label}: checking SHA-256 of the copy...`);
    const size = await stores.size(to, key);
    const identical = size === options.size && (await stores.sha256(to, key)) === sha256;
    await remove();
    const continuations = copied.perRun.filter((run) => run.outcome === 'continued').length;
    const sentRatio = copied.counts.sent / options.size;
    const writtenRatio = (copied.counts.sent + copied.counts.cutButStaged) / options.size;
    results.push({
      direction,
      size: options.size,
      budgetSeconds,
      ...(calibrationMibPerSecond !== undefined && { calibrationMibPerSecond }),
      transfer: copied.transfer,
      endedAs: copied.endedAs,
      runs: copied.perRun.length,
      continuations,
      bytesSent: copied.counts.sent,
      sentRatio,
      bytesCutButStaged: copied.counts.cutButStaged,
      writtenRatio,
      bytesAttempted: copied.counts.attempted,
      seconds: copied.seconds,
      perRun: copied.perRun,
      identical,
      checks: {
        continuations: continuations >= MIN_CONTINUATIONS,
        sentRatio: sentRatio <= MAX_SENT_RATIO,
        writtenRatio: writtenRatio <= MAX_SENT_RATIO,
        identical,
      },
    });
  }

  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({ options: { ...options, rule: RULE }, source, node: process.version, results }, null, 2)}\n`,
    );
  } else {
    printResumeReport(results, source);
  }
  const failed = results.flatMap((result) =>
    Object.entries(result.checks)
      .filter(([, met]) => !met)
      .map(([name]) => `${DIRECTIONS[result.direction].label}: ${name}`),
  );
  if (failed.length > 0) throw new Error(`acceptance missed: ${failed.join('; ')}`);
}

function printResumeReport(
  results: readonly ResumeResult[],
  source: { commit: string; uncommitted: string[] },
): void {
  const mark = (met: boolean) => (met ? '' : ' MISSED');
  const rows = results.map((result) => [
    DIRECTIONS[result.direction].label,
    formatBytes(result.size),
    result.transfer,
    result.endedAs,
    fmt(result.budgetSeconds),
    String(result.runs),
    `${result.continuations}${mark(result.checks.continuations)}`,
    `${result.sentRatio.toFixed(4)}${mark(result.checks.sentRatio)}`,
    `${result.writtenRatio.toFixed(4)}${mark(result.checks.writtenRatio)}`,
    (result.bytesAttempted / result.size).toFixed(4),
    fmt(result.seconds),
    `${result.identical ? 'yes' : 'NO'}`,
  ]);
  const lines = [
    `Resume: processTaskRecord in this process on the emulators, rule partSize ${RULE.partSize}, concurrency ${RULE.concurrency}; each run aborted with TimeBudgetExceededError after its budget.`,
    `Sources at ${source.commit || 'an unknown commit'}${source.uncommitted.length > 0 ? ` + uncommitted ${source.uncommitted.join(', ')}` : ''}; node ${process.version}.`,
    '',
    ...table(
      [
        'direction',
        'size',
        'transfer',
        'last run',
        'budget s',
        'runs',
        'continuations',
        'sent / size',
        'written / size',
        'attempted / size',
        'total s',
        'identical',
      ],
      rows,
      [false, true, false, false, true, true, true, true, true, true, true, false],
    ),
    '',
    ...results.map(
      (result) =>
        `${DIRECTIONS[result.direction].label} runs: ${result.perRun.map((run) => `${fmt(run.seconds)} s ${run.outcome} ${formatBytes(run.bytesSent)}`).join('; ')}${result.calibrationMibPerSecond !== undefined ? ` (budget from a calibration copy at ${result.calibrationMibPerSecond.toFixed(1)} MiB/s)` : ''}`,
    ),
    '',
    'Acceptance:',
    ...results.flatMap((result) => {
      const label = DIRECTIONS[result.direction].label;
      const line = (met: boolean, text: string) =>
        `  ${met ? 'met   ' : 'MISSED'}  ${label}: ${text}`;
      return [
        line(
          result.checks.continuations,
          `${result.continuations} continuations (>= ${MIN_CONTINUATIONS})`,
        ),
        line(
          result.checks.sentRatio,
          `bytes sent / size ${result.sentRatio.toFixed(4)} (<= ${MAX_SENT_RATIO})`,
        ),
        line(
          result.checks.writtenRatio,
          `bytes written / size ${result.writtenRatio.toFixed(4)} (<= ${MAX_SENT_RATIO}; sent + parts staged by calls cut short)`,
        ),
        line(result.checks.identical, 'byte-identical (SHA-256 of both, streamed)'),
      ];
    }),
    '',
    'Notes:',
    '- sent: the `size` of every StagedPart the destination store returned (stagePart, stagePartStream, stagePartFromUrl) plus single writes (put, putFromUrl), counted by a Proxy on the destination store.',
    '- written: sent + the parts that a call cut short by the budget had staged all the same (the store finished the request after the client gave up), each counted once when the next run finds it in listStaged. Below 1.0 for "sent" means such parts exist; "written" is the fuller measure of what reached the destination.',
    '- attempted: every staging call started, including those the budget cut short (their bytes were partly on the wire; a pull is read by the destination, not this process).',
    '- last run: `copied`, or `skipped up-to-date` when the budget cut the run before short during its commit after the store had committed (that run reported continued; transfer n/a).',
    '- total s: first run start to last run end, queue round trips included; source creation, calibration and verification excluded.',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
