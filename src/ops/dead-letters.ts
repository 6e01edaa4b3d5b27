import {
  ChangeMessageVisibilityBatchCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { DEAD_LETTER_QUEUES, type OpsTarget, type QueueName } from './target.ts';

/** The reason of a message that SQS itself moved after maxReceiveCount receives. */
export const RECEIVE_LIMIT_REASON = 'receive-limit';

/** One dead letter, as an operator sees it. */
export interface DeadLetter {
  /** SQS's MessageId: what `s3az dlq show` takes. */
  id: string;
  /** Which dead-letter queue holds it: `events` or `tasks`. */
  queue: 'events' | 'tasks';
  body: string;
  /**
   * Why it is here: what the replicator said (`permanent`, `not-found`, `retries-exhausted`,
   * `malformed-event`, `no-progress`, `too-many-continuations`, …), or `receive-limit` for a message SQS moved after its receives ran
   * out without an answer (the invocation crashed or timed out).
   */
  reason: string;
  error?: string;
  /** Receives before it was dead-lettered, as the replicator counted them. */
  receiveCount?: number;
  /** The URL of the queue it came from, where a re-drive sends it. */
  sourceQueue: string;
  /** When it entered the dead-letter queue. */
  deadLetteredAt: Date;
  /** For a task: its rule and source key (for an event: the rule is not known yet). */
  rule?: string;
  key?: string;
  receiptHandle: string;
}

/** The rule and key of a dead letter's body, when it is a copy task or names one object. */
function subjectOf(body: string): { rule?: string; key?: string } {
  try {
    const value = JSON.parse(body) as Record<string, unknown>;
    if (typeof value.rule === 'string' && typeof value.sourceKey === 'string') {
      return { rule: value.rule, key: value.sourceKey };
    }
    // An S3 notification's first record, or an Event Grid event's subject.
    const records = Array.isArray(value.Records) ? value.Records : [];
    const s3 = (records[0] as { s3?: { object?: { key?: string } } } | undefined)?.s3?.object?.key;
    if (typeof s3 === 'string') return { key: decodeURIComponent(s3.replace(/\+/g, ' ')) };
    if (typeof value.subject === 'string') {
      const blob = /\/blobs\/(.+)$/.exec(value.subject)?.[1];
      if (blob) return { key: blob };
    }
  } catch {
    // Not JSON: a malformed event, shown as it is.
  }
  return {};
}

function deadLetterOf(
  message: Message,
  queue: 'events' | 'tasks',
  sourceQueue: string,
): DeadLetter | undefined {
  if (!message.MessageId || !message.ReceiptHandle) return undefined;
  const attribute = (name: string) => message.MessageAttributes?.[name]?.StringValue;
  const sent = Number(message.Attributes?.SentTimestamp);
  const failedAt = Date.parse(attribute('failedAt') ?? '');
  const receiveCount = Number(attribute('receiveCount'));
  const error = attribute('error');
  const body = message.Body ?? '';
  return {
    id: message.MessageId,
    queue,
    body,
    reason: attribute('reason') ?? RECEIVE_LIMIT_REASON,
    ...(error !== undefined && { error }),
    ...(Number.isFinite(receiveCount) && receiveCount > 0 && { receiveCount }),
    sourceQueue: attribute('sourceQueue') ?? sourceQueue,
    deadLetteredAt: new Date(
      Number.isFinite(failedAt) ? failedAt : Number.isFinite(sent) ? sent : 0,
    ),
    ...subjectOf(body),
    receiptHandle: message.ReceiptHandle,
  };
}

export interface ScanOptions {
  /** Which dead-letter queues (default both). */
  queues?: ReadonlyArray<'events' | 'tasks'>;
  /** Stop after this many messages (SQS holds at most 120,000 in flight per queue). */
  limit?: number;
  /**
   * Seconds each message stays hidden while the scan holds it, so that it is seen once; a
   * crashed scan leaves it hidden this long at most. `release` shows them again at once.
   */
  leaseSeconds?: number;
  signal?: AbortSignal;
  /** Called after each receive with the number of messages seen so far. */
  onProgress?(seen: number, total: number): void;
}

/** What a scan holds: the dead letters, and how to show them again at once. */
export interface Scan {
  deadLetters: DeadLetter[];
  /** True when `limit` stopped the scan before the queues were empty. */
  truncated: boolean;
  /** Makes the given dead letters (default all still held) visible again at once. */
  release(which?: DeadLetter[]): Promise<void>;
  /** Hides the dead letters still held for `seconds` more (a long re-drive). */
  extend(seconds: number): Promise<void>;
  /** Lets go of a dead letter that was deleted: `release` and `extend` leave it alone. */
  forget(letter: DeadLetter): void;
}

/** How many messages a queue holds, visible or not. */
export async function queueCounts(
  sqs: SQSClient,
  url: string,
): Promise<{ visible: number; inFlight: number; delayed: number }> {
  const out = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: url,
      AttributeNames: [
        'ApproximateNumberOfMessages',
        'ApproximateNumberOfMessagesNotVisible',
        'ApproximateNumberOfMessagesDelayed',
      ],
    }),
  );
  const number = (name: keyof NonNullable<typeof out.Attributes>) =>
    Number(out.Attributes?.[name] ?? 0);
  return {
    visible: number('ApproximateNumberOfMessages'),
    inFlight: number('ApproximateNumberOfMessagesNotVisible'),
    delayed: number('ApproximateNumberOfMessagesDelayed'),
  };
}

/**
 * Reads the dead letters of the target: every message is received once (held hidden for
 * `leaseSeconds`), and nothing is deleted. Call `release` when done, so that each message is
 * visible again at once; the queue is then as it was, save SQS's receive counts.
 */
export async function scanDeadLetters(target: OpsTarget, options: ScanOptions = {}): Promise<Scan> {
  const wanted = options.queues ?? ['events', 'tasks'];
  const limit = options.limit ?? 10_000;
  const deadLetters: DeadLetter[] = [];
  const held = new Map<string, { url: string; letter: DeadLetter }>();
  let truncated = false;
  const totals = await Promise.all(
    DEAD_LETTER_QUEUES.filter((queue) => wanted.includes(queue.name)).map(async (queue) => {
      const counts = await queueCounts(target.sqs, target.queues[queue.deadLetter]);
      return counts.visible;
    }),
  );
  const total = Math.min(
    limit,
    totals.reduce((sum, count) => sum + count, 0),
  );
  for (const queue of DEAD_LETTER_QUEUES) {
    if (!wanted.includes(queue.name)) continue;
    const url = target.queues[queue.deadLetter];
    const source = target.queues[queue.source as QueueName];
    for (;;) {
      if (deadLetters.length >= limit) {
        truncated = true;
        break;
      }
      const out = await target.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: url,
          MaxNumberOfMessages: Math.min(10, limit - deadLetters.length),
          // A long poll asks every SQS server, so an empty answer means an empty queue.
          WaitTimeSeconds: 1,
          VisibilityTimeout: options.leaseSeconds ?? 120,
          MessageAttributeNames: ['All'],
          MessageSystemAttributeNames: ['SentTimestamp'],
        }),
        options.signal ? { abortSignal: options.signal } : {},
      );
      const messages = out.Messages ?? [];
      if (messages.length === 0) break;
      for (const message of messages) {
        const letter = deadLetterOf(message, queue.name, source);
        if (!letter || held.has(letter.id)) continue;
        held.set(letter.id, { url, letter });
        deadLetters.push(letter);
      }
      options.onProgress?.(deadLetters.length, Math.max(total, deadLetters.length));
    }
  }
  const changeVisibility = async (letters: DeadLetter[], seconds: number) => {
    const byQueue = new Map<string, DeadLetter[]>();
    for (const letter of letters) {
      const entry = held.get(letter.id);
      if (entry) byQueue.set(entry.url, [...(byQueue.get(entry.url) ?? []), letter]);
    }
    for (const [url, batch] of byQueue) {
      for (let start = 0; start < batch.length; start += 10) {
        await target.sqs.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: url,
            Entries: batch.slice(start, start + 10).map((letter, index) => ({
              Id: String(index),
              ReceiptHandle: letter.receiptHandle,
              VisibilityTimeout: seconds,
            })),
          }),
        );
      }
    }
  };
  return {
    deadLetters,
    truncated,
    async release(which = [...held.values()].map((entry) => entry.letter)) {
      await changeVisibility(which, 0);
      for (const letter of which) held.delete(letter.id);
    },
    async extend(seconds) {
      await changeVisibility(
        [...held.values()].map((entry) => entry.letter),
        seconds,
      );
    },
    forget(letter) {
      held.delete(letter.id);
    },
  };
}

/** A dead letter's error with its own object's URL left out, so equal causes group together. */
export function errorPattern(letter: DeadLetter): string {
  const text = letter.error ?? '';
  if (!letter.key) return text;
  return text.split(letter.key).join('…');
}

/** Dead letters of one queue with the same reason and error. */
export interface DeadLetterGroup {
  queue: 'events' | 'tasks';
  reason: string;
  error: string;
  count: number;
  oldest: Date;
  newest: Date;
  rules: string[];
  sampleKeys: string[];
}

/** Groups dead letters by queue, reason and error, largest groups first. */
export function groupDeadLetters(letters: DeadLetter[], samples = 3): DeadLetterGroup[] {
  const groups = new Map<string, DeadLetterGroup>();
  for (const letter of letters) {
    const error = errorPattern(letter);
    const id = `${letter.queue}\n${letter.reason}\n${error}`;
    let group = groups.get(id);
    if (!group) {
      group = {
        queue: letter.queue,
        reason: letter.reason,
        error,
        count: 0,
        oldest: letter.deadLetteredAt,
        newest: letter.deadLetteredAt,
        rules: [],
        sampleKeys: [],
      };
      groups.set(id, group);
    }
    group.count += 1;
    if (letter.deadLetteredAt < group.oldest) group.oldest = letter.deadLetteredAt;
    if (letter.deadLetteredAt > group.newest) group.newest = letter.deadLetteredAt;
    if (letter.rule && !group.rules.includes(letter.rule)) group.rules.push(letter.rule);
    if (letter.key && group.sampleKeys.length < samples) group.sampleKeys.push(letter.key);
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}
