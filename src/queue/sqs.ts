import {
  type MessageAttributeValue,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { PermanentError, RetryableError } from '../errors.ts';

/** SQS takes at most 10 entries per SendMessageBatch. */
const BATCH_SIZE = 10;
const SEND_ATTEMPTS = 4;

export interface OutgoingMessage {
  body: string;
  attributes?: Record<string, string>;
  /** Seconds before the message becomes visible (0-900). */
  delaySeconds?: number;
}

function attributesOf(
  attributes: Record<string, string> | undefined,
): Record<string, MessageAttributeValue> | undefined {
  if (!attributes) return undefined;
  return Object.fromEntries(
    Object.entries(attributes).map(([name, value]) => [
      name,
      { DataType: 'String', StringValue: value },
    ]),
  );
}

/**
 * Sends messages in batches of 10, sending again only the entries SQS did not take (a batch
 * can partly fail), with backoff. Resolves when every message is stored; otherwise throws a
 * RetryableError naming how many were not, so the caller answers 5xx or fails its record.
 */
export async function sendAll(
  client: SQSClient,
  queueUrl: string,
  messages: OutgoingMessage[],
  signal?: AbortSignal,
): Promise<void> {
  for (let start = 0; start < messages.length; start += BATCH_SIZE) {
    let pending: SendMessageBatchRequestEntry[] = messages
      .slice(start, start + BATCH_SIZE)
      .map((message, index) => {
        const attributes = attributesOf(message.attributes);
        return {
          Id: String(start + index),
          MessageBody: message.body,
          ...(attributes && { MessageAttributes: attributes }),
          ...(message.delaySeconds !== undefined && { DelaySeconds: message.delaySeconds }),
        };
      });
    let lastError = '';
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > SEND_ATTEMPTS) {
        throw new RetryableError(
          `${pending.length} of ${messages.length} messages were not stored in the queue (${lastError})`,
        );
      }
      if (attempt > 1) await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
      try {
        const out = await client.send(
          new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: pending }),
          {
            ...(signal && { abortSignal: signal }),
          },
        );
        const failed = new Set((out.Failed ?? []).map((entry) => entry.Id));
        // Entries SQS refuses as the sender's fault (too large, bad attributes) never succeed.
        const permanent = (out.Failed ?? []).find((entry) => entry.SenderFault);
        if (permanent) {
          throw new RetryableError(
            `the queue refused a message: ${permanent.Code ?? ''} ${permanent.Message ?? ''}`.trim(),
          );
        }
        lastError = (out.Failed ?? []).map((entry) => entry.Code).join(', ');
        pending = pending.filter((entry) => failed.has(entry.Id));
      } catch (error) {
        if (error instanceof RetryableError || error instanceof PermanentError) throw error;
        const sdk = error as {
          name?: string;
          $fault?: string;
          $metadata?: { httpStatusCode?: number };
        };
        // A request SQS refuses as malformed (BatchRequestTooLong, InvalidParameterValue, …)
        // is refused again; throttling and server faults pass.
        if (
          sdk.$fault === 'client' &&
          sdk.$metadata?.httpStatusCode !== 429 &&
          !/Throttl/i.test(sdk.name ?? '')
        ) {
          throw new PermanentError(`the queue refused the batch: ${sdk.name ?? 'error'}`, {
            cause: error,
          });
        }
        lastError = error instanceof Error ? error.message : String(error);
      }
    }
  }
}

/** Why a message was dead-lettered, as message attributes an operator can filter on. */
export interface DeadLetterReason {
  reason: string;
  error: string;
  receiveCount: number;
  sourceQueue: string;
}

/**
 * Sends a message to a dead-letter queue at once, with its reason as message attributes
 * (`reason`, `error`, `failedAt`, `receiveCount`, `sourceQueue`). The error text is cut to
 * 1,000 characters and must carry no secrets (adapters never put any in messages).
 */
export async function sendToDeadLetter(
  client: SQSClient,
  deadLetterQueueUrl: string,
  body: string,
  why: DeadLetterReason,
): Promise<void> {
  await client.send(
    new SendMessageCommand({
      QueueUrl: deadLetterQueueUrl,
      MessageBody: body,
      MessageAttributes: attributesOf({
        reason: why.reason,
        error: why.error.slice(0, 1000),
        failedAt: new Date().toISOString(),
        receiveCount: String(why.receiveCount),
        sourceQueue: why.sourceQueue,
      }),
    }),
  );
}
