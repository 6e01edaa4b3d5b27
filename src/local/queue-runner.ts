import { randomUUID } from 'node:crypto';
import {
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';

/** A Lambda handler for SQS events, as the handler modules export it. */
export type SqsHandler = (
  event: SQSEvent,
  context: Context,
) => Promise<SQSBatchResponse | undefined>;

export interface QueueRunnerOptions {
  sqs: SQSClient;
  queueUrl: string;
  handler: SqsHandler;
  functionName: string;
  /** Records per invocation (Lambda's `batchSize`, at most 10 here). */
  batchSize: number;
  /** Lambda's `maximumBatchingWindow`: wait this long for a batch to fill (default 0). */
  batchingWindowSeconds?: number;
  /** Invocations running at once, as Lambda scales the event source out (default 1). */
  concurrency?: number;
  /** The function's timeout, which `getRemainingTimeInMillis` counts down from. */
  timeoutSeconds: number;
  region?: string;
  /** Called when an invocation throws (the whole batch returns to the queue). */
  onError?: (error: unknown) => void;
}

function queueArnOf(queueUrl: string, region: string): string {
  // Not parsed with URL: emulators answer hosts like `sqs.us-east-1.127.0.0.1`, which WHATWG
  // URL parsing refuses (a dotted name ending in a number must be an IPv4 address).
  const [name = 'queue', account = '000000000000'] = queueUrl
    .replace(/[?#].*$/, '')
    .split('/')
    .filter(Boolean)
    .reverse();
  return `arn:aws:sqs:${region}:${account}:${name}`;
}

/** An SQS message as Lambda's event source mapping hands it to the function. */
export function recordOf(message: Message, queueArn: string, region: string): SQSRecord {
  const attributes = message.Attributes ?? {};
  return {
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body: message.Body ?? '',
    attributes: {
      ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? '1',
      SentTimestamp: attributes.SentTimestamp ?? String(Date.now()),
      SenderId: attributes.SenderId ?? 'local',
      ApproximateFirstReceiveTimestamp:
        attributes.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    },
    messageAttributes: Object.fromEntries(
      Object.entries(message.MessageAttributes ?? {}).map(([name, value]) => [
        name,
        {
          dataType: value.DataType ?? 'String',
          ...(value.StringValue !== undefined && { stringValue: value.StringValue }),
          stringListValues: [],
          binaryListValues: [],
        },
      ]),
    ),
    md5OfBody: message.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: region,
  };
}

/** Receiving loops per queue; invocations run beside them, up to the function's concurrency. */
const POLLERS = 2;

/** Counts free invocation slots; `acquire` waits for one. */
class Slots {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(size: number) {
    this.#free = size;
  }

  get free(): number {
    return this.#free;
  }

  /** Takes up to `count` free slots now, without waiting; returns how many it took. */
  take(count: number): number {
    const taken = Math.max(0, Math.min(count, this.#free));
    this.#free -= taken;
    return taken;
  }

  async acquire(): Promise<void> {
    // Checked and taken with no await in between, where another caller could take it.
    while (this.#free === 0) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#free -= 1;
  }

  release(count = 1): void {
    if (count <= 0) return;
    this.#free += count;
    for (const wake of this.#waiting.splice(0)) wake();
  }
}

/**
 * Runs a handler module against a queue the way Lambda's SQS event source does: receive a
 * batch, invoke, delete the records that succeeded (all of them, unless the response lists
 * batch item failures), leave the rest to come back after their visibility timeout, where
 * the queue's redrive policy counts receives and dead-letters. An invocation that throws
 * returns the whole batch.
 */
export class QueueRunner {
  readonly #options: QueueRunnerOptions;
  readonly #region: string;
  readonly #queueArn: string;
  #running: Promise<void> | undefined;
  #stopping = false;

  constructor(options: QueueRunnerOptions) {
    this.#options = options;
    this.#region = options.region ?? 'us-east-1';
    this.#queueArn = queueArnOf(options.queueUrl, this.#region);
  }

  /** Receives one batch (waiting up to `waitSeconds`) and runs it; resolves with its size. */
  async pollOnce(waitSeconds = 0): Promise<number> {
    const { batchSize } = this.#options;
    const messages = await this.#receive(Math.max(1, batchSize), waitSeconds);
    if (messages.length === 0) return 0;
    await this.#fill(messages);
    await this.#invoke(messages);
    return messages.length;
  }

  /**
   * With a batching window, Lambda waits for the batch to fill until the window closes. A
   * receive that fails ends the wait: the messages in hand are invoked, not left to time out.
   */
  async #fill(messages: Message[]): Promise<void> {
    const { batchSize } = this.#options;
    if (messages.length === 0) return;
    const windowEnds = Date.now() + (this.#options.batchingWindowSeconds ?? 0) * 1000;
    while (messages.length < batchSize && Date.now() < windowEnds) {
      const waitFor = Math.max(1, Math.ceil((windowEnds - Date.now()) / 1000));
      try {
        messages.push(...(await this.#receive(batchSize - messages.length, waitFor)));
      } catch (error) {
        this.#options.onError?.(error);
        return;
      }
    }
  }

  async #receive(count: number, waitSeconds: number): Promise<Message[]> {
    const out = await this.#options.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: this.#options.queueUrl,
        MaxNumberOfMessages: Math.min(10, count),
        WaitTimeSeconds: waitSeconds,
        MessageSystemAttributeNames: ['All'],
        // Emulators that predate MessageSystemAttributeNames read the older name.
        AttributeNames: ['All'],
        MessageAttributeNames: ['All'],
      }),
    );
    return out.Messages ?? [];
  }

  async #invoke(messages: Message[]): Promise<void> {
    const { sqs, queueUrl, handler } = this.#options;
    const records = messages.map((message) => recordOf(message, this.#queueArn, this.#region));
    const deadline = Date.now() + this.#options.timeoutSeconds * 1000;
    const context: Context = {
      callbackWaitsForEmptyEventLoop: false,
      functionName: this.#options.functionName,
      functionVersion: '$LATEST',
      invokedFunctionArn: `arn:aws:lambda:${this.#region}:000000000000:function:${this.#options.functionName}`,
      memoryLimitInMB: '1024',
      awsRequestId: randomUUID(),
      logGroupName: `/aws/lambda/${this.#options.functionName}`,
      logStreamName: 'local',
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      done: () => undefined,
      fail: () => undefined,
      succeed: () => undefined,
    };
    let response: SQSBatchResponse | undefined;
    try {
      response = await handler({ Records: records }, context);
    } catch (error) {
      this.#options.onError?.(error);
      return;
    }
    const failures = new Set(
      (response?.batchItemFailures ?? []).map((failure) => failure.itemIdentifier),
    );
    // Lambda treats an identifier it does not know as a failure of the whole batch.
    if ([...failures].some((id) => !records.some((record) => record.messageId === id))) return;
    const done = records.filter((record) => !failures.has(record.messageId));
    if (done.length === 0) return;
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: done.map((record, index) => ({
          Id: String(index),
          ReceiptHandle: record.receiptHandle,
        })),
      }),
    );
  }

  /**
   * Polls until `stop()`. As Lambda's event source does, a few pollers receive (up to 10
   * messages a call, long-polling when the queue is empty) and hand the messages on in batches
   * of `batchSize` to invocations, at most `concurrency` at once; a poller receives only as
   * many messages as there are free invocations for, so none waits out its visibility here.
   */
  start(): void {
    if (this.#running) return;
    this.#stopping = false;
    const { batchSize } = this.#options;
    const slots = new Slots(Math.max(1, this.#options.concurrency ?? 1));
    const invocations = new Set<Promise<void>>();
    const size = Math.max(1, batchSize);
    const invoke = (batch: Message[]) => {
      const invocation = this.#invoke(batch)
        .catch((error) => this.#options.onError?.(error))
        .finally(() => {
          slots.release();
          invocations.delete(invocation);
        });
      invocations.add(invocation);
    };
    const poll = async () => {
      while (!this.#stopping) {
        // Slots are taken before receiving, one per batch the receive can bring, so no message
        // received waits for an invocation; the ones not used go back.
        await slots.acquire();
        let held = 1 + slots.take(Math.floor(10 / size) - 1);
        try {
          if (this.#stopping) break;
          const messages = await this.#receive(Math.min(10, held * size), 1);
          await this.#fill(messages);
          for (let start = 0; start < messages.length; start += size) {
            held -= 1;
            invoke(messages.slice(start, start + size));
          }
        } catch (error) {
          if (this.#stopping) break;
          this.#options.onError?.(error);
          await new Promise((resolve) => setTimeout(resolve, 500));
        } finally {
          slots.release(held);
        }
      }
    };
    const pollers = Math.min(POLLERS, slots.free);
    this.#running = Promise.all(Array.from({ length: pollers }, poll)).then(async () => {
      await Promise.all([...invocations]);
    });
  }

  /** Stops polling; resolves when the invocations in flight have finished. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running;
    this.#running = undefined;
  }
}
