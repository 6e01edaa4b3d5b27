import { DeleteMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { UsageError } from '../errors.ts';
import { type DeadLetter, scanDeadLetters } from './dead-letters.ts';
import type { OpsTarget } from './target.ts';

/** Which dead letters to re-drive; every given filter must match. */
export interface RedriveFilter {
  /** Only this dead-letter queue. */
  queue?: 'events' | 'tasks';
  /** Only these reasons (`permanent`, `not-found`, `retries-exhausted`, `receive-limit`, …). */
  reasons?: string[];
  /** Only errors containing this text (case-insensitive). */
  error?: string;
  /** Only tasks of this rule. */
  rule?: string;
  /** Only keys under this prefix. */
  prefix?: string;
  /** Only dead letters older than this many milliseconds. */
  olderThanMs?: number;
  /** Only dead letters newer than this many milliseconds. */
  newerThanMs?: number;
}

export interface RedriveOptions extends RedriveFilter {
  /** Move at most this many. */
  max?: number;
  /** List what would move; move nothing. */
  dryRun?: boolean;
  /** Messages per second at most (default: as fast as SQS takes them). */
  ratePerSecond?: number;
  /** Seconds the dead letters stay hidden while this run holds them (default 900). */
  leaseSeconds?: number;
  signal?: AbortSignal;
  onProgress?(done: number, total: number): void;
  /** Called after a message was sent back and before it is deleted (tests simulate a crash). */
  afterSend?(letter: DeadLetter): void | Promise<void>;
  now?: () => number;
}

export interface RedriveResult {
  dryRun: boolean;
  /** Dead letters that matched the filters (at most `max`). */
  matched: DeadLetter[];
  moved: number;
  /** Dead letters left where they were: not matching, or beyond `max`. */
  skipped: number;
  /** Dead letters that could not be moved, with why (they stay in the dead-letter queue). */
  failed: Array<{ id: string; error: string }>;
  /** True when the scan stopped at its limit: run it again for the rest. */
  truncated: boolean;
  /** True when `signal` stopped the run before every match was moved. */
  stopped: boolean;
}

/**
 * A dead letter's body as it goes back: a copy that was dead-lettered while it continued
 * (`no-progress`, `too-many-continuations`) keeps its staged parts, and its continuations
 * start counting afresh, as its receives do; so do the checks and re-sent ranges of a
 * fanned-out copy's finishing task.
 */
export function redrivenBody(body: string): string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return body;
  }
  if (typeof value !== 'object' || value === null) return body;
  const { continuation, fanOut } = value as { continuation?: unknown; fanOut?: unknown };
  const counted = typeof continuation === 'object' && continuation !== null;
  const finishing =
    typeof fanOut === 'object' &&
    fanOut !== null &&
    (fanOut as { role?: unknown }).role === 'finish';
  if (!counted && !finishing) return body;
  return JSON.stringify({
    ...value,
    ...(counted && { continuation: { ...continuation, count: 1 } }),
    ...(finishing && { fanOut: { ...fanOut, checks: 0, quiet: 0, reissued: 0 } }),
  });
}

/** Whether a dead letter passes every filter given. */
export function matchesFilter(letter: DeadLetter, filter: RedriveFilter, now: number): boolean {
  const age = now - letter.deadLetteredAt.getTime();
  return (
    (filter.queue === undefined || letter.queue === filter.queue) &&
    (filter.reasons === undefined ||
      filter.reasons.length === 0 ||
      filter.reasons.includes(letter.reason)) &&
    (filter.error === undefined ||
      (letter.error ?? '').toLowerCase().includes(filter.error.toLowerCase())) &&
    (filter.rule === undefined || letter.rule === filter.rule) &&
    (filter.prefix === undefined || (letter.key ?? '').startsWith(filter.prefix)) &&
    (filter.olderThanMs === undefined || age > filter.olderThanMs) &&
    (filter.newerThanMs === undefined || age < filter.newerThanMs)
  );
}

/** A duration as operators write it: `90s`, `15m`, `2h`, `3d` (or a number of seconds). */
export function parseDuration(text: string, option: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$/.exec(text.trim());
  if (!match)
    throw new UsageError(`${option}: "${text}" is not a duration like 90s, 15m, 2h or 3d`);
  const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[(match[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit * 1000;
}

/**
 * Moves dead letters back to the queue each came from. Each one is sent to its source queue
 * before it is deleted from the dead-letter queue, so a crash between the two leaves it in
 * both: re-driven twice at worst, which the copy step makes harmless (a task whose destination
 * is up to date is skipped), and never lost. A message sent back is a new message: its
 * receive count, and so its retries, start afresh, and so does a continued copy's count of
 * continuations (see `redrivenBody`). What is not moved is shown again at once.
 */
export async function redrive(
  target: OpsTarget,
  options: RedriveOptions = {},
): Promise<RedriveResult> {
  const now = options.now ?? Date.now;
  const lease = options.leaseSeconds ?? 900;
  const scan = await scanDeadLetters(target, {
    ...(options.queue && { queues: [options.queue] }),
    leaseSeconds: lease,
    ...(options.signal && { signal: options.signal }),
  });
  const started = now();
  const matching = scan.deadLetters.filter((letter) => matchesFilter(letter, options, started));
  const matched = matching.slice(0, options.max ?? matching.length);
  const result: RedriveResult = {
    dryRun: options.dryRun === true,
    matched,
    moved: 0,
    skipped: scan.deadLetters.length - matched.length,
    failed: [],
    truncated: scan.truncated,
    stopped: false,
  };
  try {
    if (options.dryRun) return result;
    const workQueues = new Set([target.queues.events, target.queues.tasks]);
    let leaseFrom = now();
    const interval = options.ratePerSecond ? 1000 / options.ratePerSecond : 0;
    for (const [index, letter] of matched.entries()) {
      if (options.signal?.aborted) {
        result.stopped = true;
        break;
      }
      // A long run keeps what it holds hidden: past two thirds of the lease, renew it.
      if (now() - leaseFrom > (lease * 1000 * 2) / 3) {
        await scan.extend(lease);
        leaseFrom = now();
      }
      if (interval > 0) {
        const due = started + index * interval;
        if (due > now()) await new Promise((resolve) => setTimeout(resolve, due - now()));
      }
      // Only to one of this pipeline's work queues, whatever the message says.
      const destination = workQueues.has(letter.sourceQueue)
        ? letter.sourceQueue
        : letter.queue === 'events'
          ? target.queues.events
          : target.queues.tasks;
      try {
        await target.sqs.send(
          new SendMessageCommand({ QueueUrl: destination, MessageBody: redrivenBody(letter.body) }),
        );
      } catch (error) {
        result.failed.push({ id: letter.id, error: (error as Error).message });
        continue;
      }
      await options.afterSend?.(letter);
      try {
        await target.sqs.send(
          new DeleteMessageCommand({
            QueueUrl:
              letter.queue === 'events'
                ? target.queues.eventsDeadLetter
                : target.queues.tasksDeadLetter,
            ReceiptHandle: letter.receiptHandle,
          }),
        );
        scan.forget(letter);
        result.moved += 1;
      } catch (error) {
        // Sent but not deleted: it will be re-driven again, a harmless duplicate.
        result.failed.push({
          id: letter.id,
          error: `sent back, but not deleted from the dead-letter queue: ${(error as Error).message}`,
        });
      }
      options.onProgress?.(index + 1, matched.length);
    }
    return result;
  } finally {
    await scan.release();
  }
}
