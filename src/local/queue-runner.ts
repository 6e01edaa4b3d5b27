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
    // With a batching window, Lambda waits for the batch to fill until the window closes.
    const windowEnds = Date.now() + (this.#options.batchingWindowSeconds ?? 0) * 1000;
    while (messages.length < batchSize && Date.now() < windowEnds) {
      const waitFor = Math.max(1, Math.ceil((windowEnds - Date.now()) / 1000));
      messages.push(...(await this.#receive(batchSize - messages.length, waitFor)));
    }
    await this.#invoke(messages);
    return messages.length;
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

  /** Polls until `stop()` with `concurrency` loops, long-polling between batches. */
  start(): void {
    if (this.#running) return;
    this.#stopping = false;
    const loop = async () => {
      while (!this.#stopping) {
        try {
          await this.pollOnce(1);
        } catch (error) {
          if (this.#stopping) break;
          this.#options.onError?.(error);
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }
    };
    const loops = Math.max(1, this.#options.concurrency ?? 1);
    this.#running = Promise.all(Array.from({ length: loops }, loop)).then(() => undefined);
  }

  /** Stops polling after the batch in hand. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running;
    this.#running = undefined;
  }
}
