import {
  type MessageAttributeValue,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { isAwsCallersFault, PermanentError, RetryableError } from '../errors.ts';

/** SQS takes at most 10 entries per SendMessageBatch. */
const BATCH_SIZE = 10;
const SEND_ATTEMPTS = 4;

export interface OutgoingMessage {
  body: string;
  attributes?: Record<string, string>;
  /** Seconds before the message becomes visible (0-900). */
  delaySeconds?: number;
}

/**
 * What SQS refuses in a message body or a string attribute: anything but #x9, #xA, #xD,
 * #x20-#xD7FF, #xE000-#xFFFD and #x10000-#x10FFFF (with the u flag a lone surrogate is one
 * character, outside every range).
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html
 */
const NOT_FOR_SQS = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

/** Text SQS takes as an attribute: what it would refuse (from a hostile key, say) becomes U+FFFD. */
export function sqsText(text: string): string {
  return text.replace(NOT_FOR_SQS, '\uFFFD');
}

/**
 * A JSON body SQS takes: JSON.stringify escapes control characters and lone surrogates, but
 * not U+FFFE and U+FFFF, which SQS refuses; they are escaped here, which means the same in a
 * JSON string.
 */
export function sqsBody(body: string): string {
  return body.replace(
    NOT_FOR_SQS,
    (character) => `\\u${(character.codePointAt(0) ?? 0xfffd).toString(16).padStart(4, '0')}`,
  );
}

function attributesOf(
  attributes: Record<string, string> | undefined,
): Record<string, MessageAttributeValue> | undefined {
  if (!attributes) return undefined;
  return Object.fromEntries(
    Object.entries(attributes).map(([name, value]) => [
      name,
      { DataType: 'String', StringValue: sqsText(value) },
    ]),
  );
}

/** What became of each message of a `sendEach` call: the indices SQS did not store, and why. */
export interface SendOutcome {
  failed: Map<number, { reason: string; permanent: boolean }>;
}

/**
 * Sends messages in batches of 10, sending again only the entries SQS did not take (a batch
 * can partly fail), with backoff. Resolves with the indices of the messages that could not be
 * stored after every attempt, so a caller can fail exactly the work they came from.
 */
export async function sendEach(
  client: SQSClient,
  queueUrl: string,
  messages: OutgoingMessage[],
  signal?: AbortSignal,
): Promise<SendOutcome> {
  const failed: SendOutcome['failed'] = new Map();
  const permanentIds = new Set<string>();
  for (let start = 0; start < messages.length; start += BATCH_SIZE) {
    let pending: SendMessageBatchRequestEntry[] = messages
      .slice(start, start + BATCH_SIZE)
      .map((message, index) => {
        const attributes = attributesOf(message.attributes);
        return {
          Id: String(start + index),
          MessageBody: sqsBody(message.body),
          ...(attributes && { MessageAttributes: attributes }),
          ...(message.delaySeconds !== undefined && { DelaySeconds: message.delaySeconds }),
        };
      });
    const reasons = new Map<string, string>();
    for (let attempt = 1; pending.length > 0 && attempt <= SEND_ATTEMPTS; attempt++) {
      if (attempt > 1) await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
      try {
        const out = await client.send(
          new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: pending }),
          { ...(signal && { abortSignal: signal }) },
        );
        const retry = new Set<string>();
        for (const entry of out.Failed ?? []) {
          if (entry.Id === undefined) continue;
          const reason = `the queue refused the message: ${entry.Code ?? ''} ${entry.Message ?? ''}`;
          // Entries SQS refuses as the sender's fault (too large, bad attributes) never succeed.
          if (entry.SenderFault)
            failed.set(Number(entry.Id), { reason: reason.trim(), permanent: true });
          else {
            retry.add(entry.Id);
            reasons.set(entry.Id, reason.trim());
          }
        }
        pending = pending.filter((entry) => entry.Id !== undefined && retry.has(entry.Id));
      } catch (error) {
        const reason = `the queue refused the batch: ${(error as { name?: string }).name ?? 'error'}: ${error instanceof Error ? error.message : String(error)}`;
        // A request SQS refuses as malformed (BatchRequestTooLong, InvalidParameterValue, …)
        // is refused again; throttling, network and server faults are worth another try.
        const permanent = isAwsCallersFault(error);
        for (const entry of pending) {
          if (entry.Id === undefined) continue;
          reasons.set(entry.Id, reason);
          if (permanent) permanentIds.add(entry.Id);
        }
        if (permanent || signal?.aborted) break;
      }
    }
    for (const entry of pending) {
      if (entry.Id === undefined) continue;
      failed.set(Number(entry.Id), {
        reason: reasons.get(entry.Id) ?? 'not stored',
        permanent: permanentIds.has(entry.Id),
      });
    }
  }
  return { failed };
}

/**
 * Sends every message (see `sendEach`). Resolves when every message is stored; otherwise
 * throws an error naming how many were not (a PermanentError when the queue will never take
 * one of them, else a RetryableError), so the caller answers 5xx or fails its record.
 */
export async function sendAll(
  client: SQSClient,
  queueUrl: string,
  messages: OutgoingMessage[],
  signal?: AbortSignal,
): Promise<void> {
  const { failed } = await sendEach(client, queueUrl, messages, signal);
  if (failed.size === 0) return;
  const outcomes = [...failed.values()];
  const permanent = outcomes.find((outcome) => outcome.permanent);
  const text = `${failed.size} of ${messages.length} messages were not stored in the queue (${(permanent ?? outcomes[0])?.reason ?? ''})`;
  throw permanent ? new PermanentError(text) : new RetryableError(text);
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
      MessageBody: sqsBody(body),
      MessageAttributes: attributesOf({
        reason: why.reason,
        // A cut through a surrogate pair leaves half of it, which sqsText replaces.
        error: why.error.slice(0, 1000),
        failedAt: new Date().toISOString(),
        receiveCount: String(why.receiveCount),
        sourceQueue: why.sourceQueue,
      }),
    }),
  );
}
