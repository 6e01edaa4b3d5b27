import type { Command } from 'commander';
import { UsageError } from '../errors.ts';
import { type DeadLetter, groupDeadLetters, scanDeadLetters } from '../ops/dead-letters.ts';
import { parseDuration, type RedriveOptions, redrive } from '../ops/redrive.ts';
import { type PipelineStatus, pipelineStatus } from '../ops/status.ts';
import { type OpsTarget, resolveTarget, type TargetOptions } from '../ops/target.ts';
import { untilInterrupted } from './interrupt.ts';
import { CountProgress } from './progress.ts';

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
  env?: Record<string, string | undefined>;
}

const processIo = (): Io => ({ stdout: process.stdout, stderr: process.stderr });

/**
 * A reader that went away (`s3az dlq list --json | head`) ends the command quietly, as in other
 * command-line tools, instead of with a stack trace. What a re-drive holds is shown again when
 * its lease ends.
 */
function quietOnClosedPipe(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
  });
}

/** The options every operations command takes to find its stack or local mirror. */
function withTarget(command: Command): Command {
  return command
    .hook('preAction', quietOnClosedPipe)
    .option('--stack <name>', 'the CloudFormation stack (default s3-azure-replicator-<stage>)')
    .option('--stage <stage>', 'the stage it was deployed with (default dev)')
    .option('--region <region>', "the stack's region (default AWS_REGION)")
    .option('--local [port]', 'a running `s3az local` (its S3/SQS port, default 4566)')
    .option('--json', 'machine-readable output');
}

/** The target options of a command's parsed options (`--stack`, `--stage`, `--region`, `--local`). */
export function targetOptions(options: Record<string, unknown>): TargetOptions {
  return {
    ...(typeof options.stack === 'string' && { stack: options.stack }),
    ...(typeof options.stage === 'string' && { stage: options.stage }),
    ...(typeof options.region === 'string' && { region: options.region }),
    ...(options.local !== undefined && { local: options.local as boolean | string }),
  };
}

function ago(date: Date, now: Date): string {
  const seconds = Math.max(0, Math.round((now.getTime() - date.getTime()) / 1000));
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86_400)} days ago`;
}

/** A dead letter as `dlq show` prints it: everything but the receipt handle, body parsed. */
function shown(letter: DeadLetter) {
  const { receiptHandle: _handle, body, ...rest } = letter;
  let parsed: unknown = body;
  try {
    parsed = JSON.parse(body);
  } catch {
    // Shown as the text it is.
  }
  return { ...rest, body: parsed };
}

/** `s3az dlq list`: dead letters grouped by queue, reason and error. Reads; consumes nothing. */
export async function runDlqList(options: Record<string, unknown>, io: Io = processIo()) {
  const target = await resolveTarget(targetOptions(options), io.env);
  const progress = new CountProgress(io.stderr);
  const scan = await scanDeadLetters(target, {
    onProgress: (seen, total) => progress.update('reading dead letters', seen, total),
  });
  progress.done();
  await scan.release();
  const groups = groupDeadLetters(scan.deadLetters);
  if (options.json) {
    io.stdout.write(
      `${JSON.stringify({ target: target.name, total: scan.deadLetters.length, truncated: scan.truncated, groups })}\n`,
    );
    return;
  }
  const now = new Date();
  const lines = [
    `${target.name}: ${scan.deadLetters.length} dead letter${scan.deadLetters.length === 1 ? '' : 's'}${scan.truncated ? ' (the first 10,000; there are more)' : ''}`,
  ];
  for (const queue of ['tasks', 'events'] as const) {
    const mine = groups.filter((group) => group.queue === queue);
    const count = mine.reduce((sum, group) => sum + group.count, 0);
    lines.push(`${queue} dead-letter queue: ${count === 0 ? 'empty' : count}`);
    for (const group of mine) {
      lines.push(
        `  ${String(group.count).padStart(5)}  ${group.reason}${group.error ? `: ${group.error}` : ''}`,
      );
      const rules = group.rules.length > 0 ? `rule ${group.rules.join(', ')}; ` : '';
      lines.push(
        `         ${rules}oldest ${group.oldest.toISOString()} (${ago(group.oldest, now)}), newest ${group.newest.toISOString()} (${ago(group.newest, now)})`,
      );
      if (group.sampleKeys.length > 0) {
        const more = group.count - group.sampleKeys.length;
        lines.push(
          `         keys: ${group.sampleKeys.join(', ')}${more > 0 ? `, … (${more} more)` : ''}`,
        );
      }
    }
  }
  if (scan.deadLetters.length > 0) {
    lines.push(
      'Show one with `s3az dlq show <id>` (ids in --json); put them back with `s3az redrive` (see --help).',
    );
  }
  io.stdout.write(`${lines.join('\n')}\n`);
}

/** `s3az dlq show <id>`: one dead letter in full. */
export async function runDlqShow(
  id: string,
  options: Record<string, unknown>,
  io: Io = processIo(),
) {
  const target = await resolveTarget(targetOptions(options), io.env);
  const scan = await scanDeadLetters(target);
  await scan.release();
  const letter = scan.deadLetters.find((each) => each.id === id);
  if (!letter) throw new UsageError(`no dead letter with id ${id} in ${target.name}`);
  io.stdout.write(`${JSON.stringify(shown(letter), null, options.json ? undefined : 2)}\n`);
}

function redriveOptions(options: Record<string, unknown>): RedriveOptions {
  const text = (name: string) =>
    typeof options[name] === 'string' ? (options[name] as string) : undefined;
  const queue = text('queue');
  if (queue !== undefined && queue !== 'events' && queue !== 'tasks') {
    throw new UsageError(`--queue: "${queue}" is not "events" or "tasks"`);
  }
  const positive = (name: string) => {
    const value = text(name);
    if (value === undefined) return undefined;
    const number = Number(value);
    if (!Number.isFinite(number) || number <= 0) {
      throw new UsageError(`--${name}: "${value}" is not a positive number`);
    }
    return number;
  };
  const max = positive('max');
  if (max !== undefined && !Number.isInteger(max))
    throw new UsageError(`--max: "${text('max')}" is not a whole number`);
  const rate = positive('rate');
  const reasons = text('reason')
    ?.split(',')
    .map((reason) => reason.trim())
    .filter(Boolean);
  const older = text('olderThan');
  const newer = text('newerThan');
  return {
    ...(queue !== undefined && { queue }),
    ...(reasons !== undefined && { reasons }),
    ...(text('error') !== undefined && { error: text('error') as string }),
    ...(text('rule') !== undefined && { rule: text('rule') as string }),
    ...(text('prefix') !== undefined && { prefix: text('prefix') as string }),
    ...(older !== undefined && { olderThanMs: parseDuration(older, '--older-than') }),
    ...(newer !== undefined && { newerThanMs: parseDuration(newer, '--newer-than') }),
    ...(max !== undefined && { max }),
    ...(rate !== undefined && { ratePerSecond: rate }),
    ...(options.dryRun === true && { dryRun: true }),
  };
}

/** `s3az redrive`: dead letters back to their queues, filtered; a summary at the end. */
export async function runRedrive(options: Record<string, unknown>, io: Io = processIo()) {
  const settings = redriveOptions(options);
  const target = await resolveTarget(targetOptions(options), io.env);
  const progress = new CountProgress(io.stderr);
  // Ctrl-C stops after the message in hand; what is left is shown again at once. (Stopped
  // while still reading, the dead letters read so far come back when their lease ends.)
  const result = await untilInterrupted(
    'the dead letters read so far are visible again when their lease ends (15 minutes)',
    (signal) =>
      redrive(target, {
        ...settings,
        signal,
        onProgress: (done, total) => progress.update('re-driving', done, total),
      }),
  );
  progress.done();
  const summary = {
    target: target.name,
    dryRun: result.dryRun,
    matched: result.matched.length,
    moved: result.moved,
    skipped: result.skipped,
    failed: result.failed.length,
    truncated: result.truncated,
    stopped: result.stopped,
  };
  if (options.json) {
    io.stdout.write(
      `${JSON.stringify({
        ...summary,
        failures: result.failed,
        ...(result.dryRun && { wouldMove: result.matched.map(shown) }),
      })}\n`,
    );
  } else if (result.dryRun) {
    const lines = result.matched.map(
      (letter) =>
        `would move  ${letter.queue}  ${letter.id}  ${letter.reason}  ${letter.key ?? ''}`,
    );
    lines.push(
      `${target.name}: ${result.matched.length} would move, ${result.skipped} would stay (dry run: nothing moved)`,
    );
    io.stdout.write(`${lines.join('\n')}\n`);
  } else {
    const lines = result.failed.map((failure) => `failed  ${failure.id}: ${failure.error}`);
    lines.push(
      `${target.name}: moved ${result.moved}, skipped ${result.skipped}, failed ${result.failed.length}${result.stopped ? ' (interrupted: the rest stays in the dead-letter queue)' : ''}${result.truncated ? ' (more dead letters remain than one run reads: run it again)' : ''}`,
    );
    io.stdout.write(`${lines.join('\n')}\n`);
  }
  if (result.failed.length > 0) {
    throw new Error(`${result.failed.length} dead letters could not be re-driven`);
  }
}

function statusText(status: PipelineStatus): string {
  const now = new Date(status.at);
  const names: Record<string, string> = {
    events: 'events',
    tasks: 'tasks',
    eventsDeadLetter: 'events dead-letter',
    tasksDeadLetter: 'tasks dead-letter',
  };
  const lines = [
    `${status.target} at ${status.at}`,
    `${'queue'.padEnd(19)}${'visible'.padStart(9)}${'in flight'.padStart(11)}${'delayed'.padStart(9)}  oldest`,
  ];
  for (const queue of status.queues) {
    lines.push(
      `${(names[queue.queue] ?? queue.queue).padEnd(19)}${String(queue.visible).padStart(9)}${String(queue.inFlight).padStart(11)}${String(queue.delayed).padStart(9)}  ${queue.oldestAgeSeconds === undefined ? '-' : `${Math.round(queue.oldestAgeSeconds)} s`}`,
    );
  }
  const reasons = Object.entries(status.deadLetters.byReason)
    .map(([reason, count]) => `${reason} ${count}`)
    .join(', ');
  lines.push(`dead letters: ${status.deadLetters.total === 0 ? 'none' : reasons}`);
  if (status.recent) {
    const latency =
      status.recent.latencyP50Ms === undefined
        ? 'no latency data'
        : `latency p50 ${Math.round(status.recent.latencyP50Ms)} ms, p99 ${Math.round(status.recent.latencyP99Ms ?? 0)} ms`;
    lines.push(
      `last 15 min: ${status.recent.objects} objects, ${status.recent.bytes} bytes replicated; ${latency}`,
    );
  }
  for (const rule of status.rules) {
    lines.push(
      rule.lastAt
        ? `rule ${rule.rule}: last ${rule.lastAction} ${rule.lastKey} ${ago(new Date(rule.lastAt), now)}${rule.latencyMs === undefined ? '' : `, ${rule.latencyMs} ms after its event`}`
        : `rule ${rule.rule}: nothing replicated since the mirror started`,
    );
  }
  return lines.join('\n');
}

/** `s3az status`: queues, dead letters and recent replication, once or every few seconds. */
export async function runStatus(options: Record<string, unknown>, io: Io = processIo()) {
  const target: OpsTarget = await resolveTarget(targetOptions(options), io.env);
  const watch =
    options.watch === undefined ? undefined : options.watch === true ? 5 : Number(options.watch);
  if (watch !== undefined && (!Number.isFinite(watch) || watch < 1)) {
    throw new UsageError(
      `--watch: "${String(options.watch)}" is not a number of seconds (1 or more)`,
    );
  }
  for (;;) {
    const status = await pipelineStatus(target);
    if (options.json) io.stdout.write(`${JSON.stringify(status)}\n`);
    else {
      // On a terminal, --watch redraws one screen.
      const clear = watch !== undefined && io.stderr.isTTY ? '\x1b[2J\x1b[H' : '';
      io.stdout.write(`${clear}${statusText(status)}\n`);
    }
    if (watch === undefined) return;
    await new Promise((resolve) => setTimeout(resolve, watch * 1000));
  }
}

/** Adds `dlq list`, `dlq show`, `redrive` and `status` to the program. */
export function registerOpsCommands(program: Command): void {
  const dlq = program
    .command('dlq')
    .description('inspect the dead-letter queues (reads; consumes nothing)');
  withTarget(
    dlq
      .command('list')
      .description(
        'dead letters of both queues, grouped by reason and error, with counts, ages, rules and sample keys',
      ),
  ).action((options) => runDlqList(options));
  withTarget(
    dlq
      .command('show')
      .description('one dead letter in full')
      .argument('<id>', 'its message id (from dlq list --json)'),
  ).action((id: string, options) => runDlqShow(id, options));
  withTarget(
    program
      .command('redrive')
      .description(
        'move dead letters back to the queue they came from (sent before deleted: a crash duplicates at worst, never loses); retries start afresh',
      )
      .option('--queue <queue>', 'only this dead-letter queue: events or tasks')
      .option(
        '--reason <reasons>',
        'only these reasons, comma-separated (permanent, not-found, retries-exhausted, receive-limit, malformed-event, …)',
      )
      .option(
        '--error <text>',
        'only dead letters whose error contains this text (case-insensitive)',
      )
      .option('--rule <name>', 'only tasks of this rule')
      .option('--prefix <prefix>', 'only keys under this prefix')
      .option('--older-than <duration>', 'only dead letters older than this (90s, 15m, 2h, 3d)')
      .option('--newer-than <duration>', 'only dead letters newer than this')
      .option('--max <n>', 'move at most this many')
      .option('--rate <n>', 'messages per second at most')
      .option('--dry-run', 'list what would move; move nothing'),
  ).action((options) => runRedrive(options));
  withTarget(
    program
      .command('status')
      .description(
        'queue depths and ages, dead letters by reason, and what each rule replicated last',
      )
      .option('--watch [seconds]', 'show it again every few seconds (default 5)'),
  ).action((options) => runStatus(options));
}
