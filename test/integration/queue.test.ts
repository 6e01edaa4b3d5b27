import { CreateQueueCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { beforeAll, describe, expect, it } from 'vitest';
import { PermanentError } from '../../src/errors.ts';
import { QueueRunner } from '../../src/local/queue-runner.ts';
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

describe('Class: QueueRunner', () => {
  it('hands every message to one invocation, in batches of batchSize, at most concurrency at once', async () => {
    const queueUrl = await createQueue();
    const bodies = Array.from({ length: 37 }, (_, i) => `m${i}`);
    await sendAll(
      sqs,
      queueUrl,
      bodies.map((body) => ({ body })),
    );
    const seen: string[] = [];
    const batchSizes: number[] = [];
    const errors: unknown[] = [];
    let running = 0;
    let most = 0;
    const runner = new QueueRunner({
      sqs,
      queueUrl,
      functionName: 'test',
      batchSize: 4,
      concurrency: 3,
      timeoutSeconds: 30,
      onError: (error) => errors.push(error),
      handler: async (event) => {
        running += 1;
        most = Math.max(most, running);
        batchSizes.push(event.Records.length);
        // Let the other pollers and invocations run while this one is busy.
        await new Promise((resolve) => setImmediate(resolve));
        seen.push(...event.Records.map((record) => record.body));
        running -= 1;
        return { batchItemFailures: [] };
      },
    });
    runner.start();
    const deadline = Date.now() + 20_000;
    while (seen.length < bodies.length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await runner.stop();
    expect([...seen].sort()).toEqual([...bodies].sort());
    expect(Math.max(...batchSizes)).toBeLessThanOrEqual(4);
    expect(most).toBeLessThanOrEqual(3);
    expect(errors).toEqual([]);
    // Every message was deleted after its invocation: nothing comes back.
    const again = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        VisibilityTimeout: 0,
      }),
    );
    expect(again.Messages ?? []).toEqual([]);
  });
});
