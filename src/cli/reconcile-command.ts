import { createWriteStream, type WriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import type { ReplicationConfig } from '../config/schema.ts';
import { DIFFERENCE_KINDS, IGNORED_REASONS } from '../core/reconcile.ts';
import { UsageError } from '../errors.ts';
import { Telemetry } from '../observe/telemetry.ts';
import { resolveTarget, type TargetOptions } from '../ops/target.ts';
import {
  DEFAULT_MAX_DELETE_FRACTION,
  newReconcileState,
  type ReconcileProgress,
  type ReconcileSummary,
  type ReportedDifference,
  type RuleResult,
  runReconcile,
  summarize,
} from '../queue/reconcile.ts';
import { parseReconcileRequest } from '../queue/reconcile-request.ts';
import { buildRuntime } from '../runtime/runtime.ts';
import type { Environment } from '../stores/clients.ts';
import { untilInterrupted } from './interrupt.ts';

/** Output sinks and environment, injectable for tests. */
export interface ReconcileIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
  env?: Environment;
  /** Fires on Ctrl-C: listing stops; the tasks already sent stay in the queue. */
  signal?: AbortSignal;
}

/** The options of `s3az reconcile`, as commander passes them. */
export interface ReconcileCommandOptions {
  stack?: string;
  stage?: string;
  region?: string;
  local?: boolean | string;
  config?: string;
  rule?: string[];
  dryRun?: boolean;
  report?: string;
  force?: boolean;
  maxDeleteFraction?: string;
  json?: boolean;
}

const SIDE_NAME = { s3: 'S3', azure: 'Azure' } as const;
const count = (value: number) => value.toLocaleString('en-US');
const counted = (value: number, noun: string, nouns = `${noun}s`) =>
  `${count(value)} ${value === 1 ? noun : nouns}`;
const percent = (part: number, whole: number) =>
  `${whole === 0 ? 100 : Math.round((part / whole) * 1000) / 10}%`;

/** `0.1`, or a percentage (`10%`). */
export function parseFraction(text: string | undefined): number {
  if (text === undefined) return DEFAULT_MAX_DELETE_FRACTION;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(text);
  const value = match ? Number(match[1]) / (match[2] ? 100 : 1) : Number.NaN;
  if (!Number.isFinite(value) || value < 0 || value > 1) {
    throw new UsageError(
      `--max-delete-fraction: "${text}" is not a fraction from 0 to 1 (or a percentage, 10%)`,
    );
  }
  return value;
}

function targetOptions(options: ReconcileCommandOptions): TargetOptions {
  return {
    ...(options.stack !== undefined && { stack: options.stack }),
    ...(options.stage !== undefined && { stage: options.stage }),
    ...(options.region !== undefined && { region: options.region }),
    ...(options.local !== undefined && { local: options.local }),
  };
}

/** Where the listing stands, on one redrawn line of a terminal; nothing otherwise. */
class ListingProgress {
  readonly #stream: NodeJS.WriteStream;
  #lastDraw = 0;
  #drawn = false;
  #spin = 0;

  constructor(stream: NodeJS.WriteStream) {
    this.#stream = stream;
  }

  update(progress: ReconcileProgress): void {
    if (!this.#stream.isTTY) return;
    const now = Date.now();
    if (now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    const { counts } = progress;
    const differences = DIFFERENCE_KINDS.reduce((sum, kind) => sum + counts.differences[kind], 0);
    // The number of objects is not known before the end: the bar runs over the rules.
    const width = 20;
    const filled = Math.round(((progress.ruleNumber - 1) / progress.rules) * width);
    const marker = filled < width ? '>' : '';
    const bar = `[${'#'.repeat(filled)}${marker}${' '.repeat(Math.max(0, width - filled - marker.length))}]`;
    const spinner = '|/-\\'[this.#spin++ % 4] ?? '';
    const text =
      progress.phase === 'copies'
        ? `${bar} ${spinner} rule ${progress.ruleNumber}/${progress.rules} "${progress.rule}": listed ${count(counts.listed.s3)} on S3, ${count(counts.listed.azure)} on Azure; ${count(differences)} differences, ${count(counts.tasksSent)} tasks sent`
        : `${bar} ${spinner} rule ${progress.ruleNumber}/${progress.rules} "${progress.rule}": listing again for the deletes; ${count(counts.deletesSent.s3 + counts.deletesSent.azure)} sent`;
    const columns = this.#stream.columns ?? 100;
    this.#stream.write(`\r${text.slice(0, columns - 1).padEnd(columns - 1)}`);
    this.#drawn = true;
  }

  done(): void {
    if (this.#drawn) this.#stream.write('\n');
    this.#drawn = false;
  }
}

/** A logger and metrics that stay silent: the command prints its own summary. */
function silentTelemetry(): Telemetry {
  return new Telemetry(
    new Logger({ serviceName: 's3az-reconcile', logLevel: 'SILENT' }),
    new Metrics({ namespace: 'S3AzureReplicator', serviceName: 's3az-reconcile' }),
  );
}

function ruleText(
  result: RuleResult,
  config: ReplicationConfig,
  fraction: number,
  dryRun: boolean,
): string[] {
  const rule = config.rules.find((each) => each.name === result.rule);
  if (!rule || result.missing) return [`rule "${result.rule}": not in the configuration`];
  const differences = DIFFERENCE_KINDS.reduce((sum, kind) => sum + result.differences[kind], 0);
  const lines = [
    `rule "${rule.name}" (s3://${rule.s3.bucket}/${rule.s3.prefix} <-> az://${rule.azure.container}/${rule.azure.prefix}): ${count(result.listed.s3)} objects on S3, ${count(result.listed.azure)} on Azure`,
  ];
  const kinds = DIFFERENCE_KINDS.filter((kind) => result.differences[kind] > 0)
    .map((kind) => `${count(result.differences[kind])} ${kind}`)
    .join(', ');
  lines.push(
    `  in sync ${count(result.inSync)}; ${differences === 0 ? 'no differences' : `${counted(differences, 'difference')}: ${kinds}`}`,
  );
  const ignored = IGNORED_REASONS.filter((reason) => result.ignored[reason] > 0);
  if (ignored.length > 0) {
    lines.push(
      `  left alone: ${ignored.map((reason) => `${count(result.ignored[reason])} ${reason}`).join(', ')}`,
    );
  }
  if (!dryRun) {
    const deletes = result.deletesSent.s3 + result.deletesSent.azure;
    lines.push(
      `  sent ${counted(result.tasksSent, 'task')} (${counted(result.tasksSent - deletes, 'copy', 'copies')}, ${counted(deletes, 'delete')})`,
    );
  }
  for (const stop of result.deleteStops) {
    lines.push(
      `  deletes ${dryRun ? 'would be held back' : 'held back'}: ${count(stop.deletes)} on ${SIDE_NAME[stop.side]} is ${percent(stop.deletes, stop.objects)} of its ${count(stop.objects)} objects, over --max-delete-fraction ${fraction} (--force sends them)`,
    );
  }
  if (result.deleteStops.length === 0 && result.deletesWithheld > 0) {
    lines.push(
      `  ${count(result.deletesWithheld)} deletes found while sending were held back (over --max-delete-fraction ${fraction})`,
    );
  }
  return lines;
}

/** The one line a refusal fails with. */
function refusalText(summary: ReconcileSummary, fraction: number): string {
  const [first, ...others] = summary.refused;
  if (!first) return '';
  const stop = first.deleteStops[0];
  const where = stop
    ? `${count(stop.deletes)} on ${SIDE_NAME[stop.side]} would be ${percent(stop.deletes, stop.objects)} of its ${count(stop.objects)} objects`
    : '';
  const more = others.length > 0 ? ` (and in ${others.length} more rules)` : '';
  return `rule "${first.rule}": refused to send ${count(first.deletesWithheld)} deletes: ${where}, over --max-delete-fraction ${fraction}${more}; the other tasks were sent. Look at them with --dry-run --report <file>, then run again with --force to send them`;
}

/**
 * `s3az reconcile`: lists both sides of each rule of a stack (`--config`) or of the local mirror
 * (`--local`) and sends one task per difference to the target's tasks queue (or, with
 * `--dry-run`, only reports them). Resolves with the summary; throws (exit 1) when the delete
 * safety stop held deletes back.
 */
export async function runReconcileCommand(
  options: ReconcileCommandOptions,
  io: ReconcileIo,
): Promise<ReconcileSummary> {
  const fraction = parseFraction(options.maxDeleteFraction);
  const target = await resolveTarget(targetOptions(options), io.env);
  let config: ReplicationConfig;
  let env: Environment;
  if (target.local) {
    if (options.config !== undefined) {
      throw new UsageError(
        '--config: --local reconciles the local mirror by its own rules; leave out --config',
      );
    }
    ({ config, env } = target.local);
  } else {
    if (options.config === undefined) {
      throw new UsageError(
        `--config <file> is needed for ${target.name}: the replication configuration it was deployed with`,
      );
    }
    config = await loadConfig(options.config);
    env = target.env;
  }
  const request = parseReconcileRequest(
    {
      ...(options.rule !== undefined && options.rule.length > 0 && { rules: options.rule }),
      dryRun: options.dryRun === true,
      force: options.force === true,
      maxDeleteFraction: fraction,
    },
    config.rules.map((rule) => rule.name),
  );
  let report: WriteStream | undefined;
  if (options.report !== undefined) {
    const path = options.report;
    await writeFile(path, '').catch((error: Error) => {
      throw new UsageError(`--report: cannot write ${path} (${error.message.split('\n')[0]})`);
    });
    report = createWriteStream(path, { flags: 'a' });
  }
  // A dry run without a report file shows its report ahead of the summary.
  const reportLine = (difference: ReportedDifference) => {
    const line = `${JSON.stringify(difference)}\n`;
    if (report) report.write(line);
    else if (request.dryRun) io.stdout.write(line);
  };

  const runtime = await buildRuntime({
    env,
    config,
    sqs: target.sqs,
    telemetry: silentTelemetry(),
  });
  const progress = new ListingProgress(io.stderr);
  const started = Date.now();
  let run: Awaited<ReturnType<typeof runReconcile>>;
  try {
    run = await runReconcile(
      newReconcileState(request),
      {
        rules: config.rules,
        storesOf: (rule) => runtime.storesOf(rule),
        sqs: target.sqs,
        tasksQueueUrl: target.queues.tasks,
      },
      {
        ...(io.signal && { signal: io.signal }),
        onDifference: reportLine,
        onProgress: (state) => progress.update(state),
      },
    );
  } finally {
    progress.done();
    if (report) {
      const closing = report;
      await new Promise<void>((resolve) => closing.end(resolve));
    }
  }
  const summary = summarize(run.state);
  const seconds = Math.round((Date.now() - started) / 100) / 10;
  if (options.json) {
    io.stdout.write(
      `${JSON.stringify({ target: target.name, ...summary, maxDeleteFraction: fraction, seconds })}\n`,
    );
  } else {
    const lines = [
      `reconcile ${summary.runId} of ${target.name}${summary.dryRun ? ' (dry run: nothing sent)' : ''}`,
      ...summary.rules.flatMap((result) => ruleText(result, config, fraction, summary.dryRun)),
      summary.dryRun
        ? `${counted(summary.differences, 'difference')} in ${seconds} s; nothing was sent${options.report ? `; the report is in ${options.report}` : ''}`
        : `${counted(summary.differences, 'difference')}, ${counted(summary.tasksSent, 'task')} sent to the tasks queue in ${seconds} s${summary.tasksSent > 0 ? '; the copy step carries them out' : ''}${options.report ? `; the report is in ${options.report}` : ''}`,
    ];
    io.stdout.write(`${lines.join('\n')}\n`);
  }
  if (!summary.dryRun && summary.refused.length > 0) {
    throw new Error(refusalText(summary, fraction));
  }
  return summary;
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** Adds `s3az reconcile` to the program. */
export function registerReconcileCommand(program: Command): void {
  program
    .command('reconcile')
    .description(
      'list both sides of each rule and send one task per difference (missing, stale, diverged, deleted) to the tasks queue; also the backfill of a new rule',
    )
    .option('--stack <name>', 'the CloudFormation stack (default s3-azure-replicator-<stage>)')
    .option('--stage <stage>', 'the stage it was deployed with (default dev)')
    .option('--region <region>', "the stack's region (default AWS_REGION)")
    .option('--local [port]', 'a running `s3az local` (its S3/SQS port, default 4566)')
    .option(
      '--config <file>',
      'the replication configuration the stack was deployed with (not with --local)',
    )
    .option('--rule <name>', 'only this rule (repeat for more; default every rule)', collect)
    .option('--dry-run', 'send nothing: report the differences (JSON lines) and a summary')
    .option('--report <file>', 'write the differences to this file, one JSON line each')
    .option(
      '--max-delete-fraction <fraction>',
      "hold back a rule's deletes when they exceed this fraction of the objects on a side (0-1, or 10%)",
      String(DEFAULT_MAX_DELETE_FRACTION),
    )
    .option('--force', 'send the deletes even beyond --max-delete-fraction')
    .option('--json', 'print the summary as one JSON object')
    .action(async (options: ReconcileCommandOptions) => {
      await untilInterrupted(
        'the tasks sent so far stay in the tasks queue (run reconcile again for the rest)',
        (signal) =>
          runReconcileCommand(options, {
            stdout: process.stdout,
            stderr: process.stderr,
            signal,
          }),
      );
    });
}
