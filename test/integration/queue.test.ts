import { CreateQueueCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { beforeAll, describe, expect, it } from 'vitest';
import { PermanentError } from '../../src/errors.ts';
import { sendAll, sendToDeadLetter } from '../../src/queue/sqs.ts';
import { makeSqsClient, uniqueName } from '../support/emulators.ts';

let sqs: SQSClient;

beforeAll(() => {
  sqs = makeSqsClient();
});

async function createQueue(): Promise<string> {
  const out = await sqs.send(new CreateQueueCommand({ QueueName: uniqueName('q') }));
  return out.QueueUrl ?? '';
}

async function receiveAll(queueUrl: string, expected: number) {
  const messages = [];
  const deadline = Date.now() + 10_000;
  while (messages.length < expected && Date.now() < deadline) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        MessageAttributeNames: ['All'],
      }),
    );
    messages.push(...(out.Messages ?? []));
  }
  return messages;
}

describe('Function: sendAll', () => {
  it('stores every message, in batches of ten', async () => {
    const queueUrl = await createQueue();
    const bodies = Array.from({ length: 25 }, (_, i) => JSON.stringify({ n: i }));
    await sendAll(
      sqs,
      queueUrl,
      bodies.map((body) => ({ body, attributes: { kind: 'task' } })),
    );
    const received = await receiveAll(queueUrl, 25);
    expect(received.map((m) => m.Body).sort()).toEqual([...bodies].sort());
    expect(received[0]?.MessageAttributes?.kind?.StringValue).toBe('task');
  });

  it('refuses, as permanent, a message the queue can never take', async () => {
    const queueUrl = await createQueue();
    const tooLarge = 'x'.repeat(1024 * 1024 + 1);
    await expect(sendAll(sqs, queueUrl, [{ body: tooLarge }])).rejects.toBeInstanceOf(
      PermanentError,
    );
  });
});

describe('Function: sendToDeadLetter', () => {
  it('keeps the body and says why, as message attributes', async () => {
    const queueUrl = await createQueue();
    await sendToDeadLetter(sqs, queueUrl, '{"task":1}', {
      reason: 'permanent',
      error: 'az://c/k: access denied (AuthorizationFailure)',
      receiveCount: 1,
      sourceQueue: 'tasks',
    });
    const [message] = await receiveAll(queueUrl, 1);
    expect(message?.Body).toBe('{"task":1}');
    const attributes = Object.fromEntries(
      Object.entries(message?.MessageAttributes ?? {}).map(([name, value]) => [
        name,
        value.StringValue,
      ]),
    );
    expect(attributes).toMatchObject({
      reason: 'permanent',
      error: 'az://c/k: access denied (AuthorizationFailure)',
      receiveCount: '1',
      sourceQueue: 'tasks',
    });
    expect(Date.parse(attributes.failedAt ?? '')).not.toBeNaN();
  });
});
