import {
  CreateQueueCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { createRedriveHandler } from '../../handlers/redrive.ts';
import { validateConfig } from '../../src/config/load.ts';
import { groupDeadLetters, queueCounts, scanDeadLetters } from '../../src/ops/dead-letters.ts';
import { redrive, redrivenBody } from '../../src/ops/redrive.ts';
import { parseRedriveRequest } from '../../src/ops/redrive-request.ts';
import type { OpsTarget } from '../../src/ops/target.ts';
import { sendToDeadLetter } from '../../src/queue/sqs.ts';
import { buildRuntime } from '../../src/runtime/runtime.ts';
import { emulatorEnv, emulatorVariables, makeSqsClient, uniqueName } from '../support/emulators.ts';

const sqs = makeSqsClient();

/** A pipeline's four queues on the emulator, as a target of the operations commands. */
async function pipelineTarget(): Promise<OpsTarget> {
  const queue = async (name: string) =>
    (await sqs.send(new CreateQueueCommand({ QueueName: uniqueName(name) }))).QueueUrl ?? '';
  return {
    name: 'test pipeline',
    sqs,
    queues: {
      events: await queue('events'),
      eventsDeadLetter: await queue('events-dlq'),
      tasks: await queue('tasks'),
      tasksDeadLetter: await queue('tasks-dlq'),
    },
    env: emulatorVariables(),
  };
}

const task = (rule: string, key: string) =>
  JSON.stringify({
    rule,
    kind: 'created',
    sourceSide: 's3',
    sourceContainer: 'bucket',
    sourceKey: key,
    destinationContainer: 'container',
    destinationKey: key,
    eventTime: new Date().toISOString(),
    correlationId: `c-${key}`,
  });

/** Dead-letters a task as the copy step does, with its reason and error. */
async function deadLetterTask(
  target: OpsTarget,
  rule: string,
  key: string,
  reason: string,
  error: string,
) {
  await sendToDeadLetter(sqs, target.queues.tasksDeadLetter, task(rule, key), {
    reason,
    error,
    receiveCount: 1,
    sourceQueue: target.queues.tasks,
  });
}

/** Receives and deletes every message of a queue. */
async function drain(url: string): Promise<Message[]> {
  const all: Message[] = [];
  for (;;) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    if (Messages.length === 0) return all;
    for (const message of Messages) {
      all.push(message);
      await sqs.send(
        new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: message.ReceiptHandle }),
      );
    }
  }
}

const keysOf = (messages: Message[]) =>
  messages
    .map((message) => (JSON.parse(message.Body ?? '{}') as { sourceKey?: string }).sourceKey)
    .sort();

describe('Function: scanDeadLetters', () => {
  it('reads every dead letter with its reason, groups them, and leaves them all visible', async () => {
    // Prepare: 20 tasks refused for one cause, and an event SQS moved without a reason.
    const target = await pipelineTarget();
    for (let i = 0; i < 20; i++) {
      await deadLetterTask(
        target,
        'r',
        `k${i}`,
        'not-found',
        `az://gone/k${i}: container does not exist`,
      );
    }
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: target.queues.eventsDeadLetter,
        MessageBody: '{"Records":[{"s3":{"object":{"key":"a+b.txt"}}}]}',
      }),
    );
    // Act
    const scan = await scanDeadLetters(target);
    await scan.release();
    // Assess
    expect(scan.deadLetters).toHaveLength(21);
    const groups = groupDeadLetters(scan.deadLetters);
    expect(groups[0]).toMatchObject({
      queue: 'tasks',
      reason: 'not-found',
      error: 'az://gone/…: container does not exist',
      count: 20,
      rules: ['r'],
    });
    expect(groups[0]?.sampleKeys).toHaveLength(3);
    expect(groups[1]).toMatchObject({
      queue: 'events',
      reason: 'receive-limit',
      count: 1,
      sampleKeys: ['a b.txt'],
    });
    // Reading consumed nothing: all of them are visible again at once.
    expect((await queueCounts(sqs, target.queues.tasksDeadLetter)).visible).toBe(20);
    expect((await queueCounts(sqs, target.queues.eventsDeadLetter)).visible).toBe(1);
  });
});

describe('Function: redrive', () => {
  it('moves exactly what the filters match, to the queue it came from, beside live traffic', async () => {
    // Prepare
    const target = await pipelineTarget();
    await deadLetterTask(
      target,
      'a',
      'x/1',
      'permanent',
      'az://c/x/1: access denied (AuthorizationFailure)',
    );
    await deadLetterTask(
      target,
      'a',
      'x/2',
      'permanent',
      'az://c/x/2: access denied (AuthorizationFailure)',
    );
    await deadLetterTask(
      target,
      'a',
      'y/3',
      'permanent',
      'az://c/y/3: access denied (AuthorizationFailure)',
    );
    await deadLetterTask(
      target,
      'b',
      'x/4',
      'permanent',
      'az://c/x/4: access denied (AuthorizationFailure)',
    );
    await deadLetterTask(
      target,
      'a',
      'x/5',
      'retries-exhausted',
      'retryable: az://c/x/5: ServerBusy',
    );
    // Live traffic on the work queue meanwhile.
    await sqs.send(
      new SendMessageCommand({ QueueUrl: target.queues.tasks, MessageBody: task('a', 'live') }),
    );
    // Act: a dry run first, then the move.
    const dry = await redrive(target, {
      reasons: ['permanent'],
      rule: 'a',
      prefix: 'x/',
      dryRun: true,
    });
    const result = await redrive(target, { reasons: ['permanent'], rule: 'a', prefix: 'x/' });
    // Assess
    expect(dry.matched.map((letter) => letter.key).sort()).toEqual(['x/1', 'x/2']);
    expect(dry.moved).toBe(0);
    expect(result).toMatchObject({ moved: 2, skipped: 3, failed: [] });
    expect(keysOf(await drain(target.queues.tasks))).toEqual(['live', 'x/1', 'x/2']);
    expect(keysOf(await drain(target.queues.tasksDeadLetter))).toEqual(['x/4', 'x/5', 'y/3']);
  });

  it('filters by error text, age and count', async () => {
    const target = await pipelineTarget();
    for (let i = 0; i < 5; i++) {
      await deadLetterTask(
        target,
        'a',
        `busy/${i}`,
        'retries-exhausted',
        `retryable: az://c/busy/${i}: ServerBusy`,
      );
    }
    await deadLetterTask(
      target,
      'a',
      'other',
      'retries-exhausted',
      'retryable: az://c/other: OperationTimedOut',
    );

    expect(
      (await redrive(target, { error: 'serverbusy', newerThanMs: 60_000, max: 3 })).moved,
    ).toBe(3);
    expect((await redrive(target, { error: 'serverbusy', olderThanMs: 60_000 })).moved).toBe(0);

    expect(keysOf(await drain(target.queues.tasks))).toHaveLength(3);
    expect(keysOf(await drain(target.queues.tasksDeadLetter))).toEqual(
      expect.arrayContaining(['other']),
    );
  });

  it('duplicates at worst, and loses nothing, when it crashes between send and delete', async () => {
    // Prepare
    const target = await pipelineTarget();
    for (const key of ['k1', 'k2', 'k3', 'k4']) {
      await deadLetterTask(
        target,
        'a',
        key,
        'not-found',
        `az://c/${key}: container does not exist`,
      );
    }
    // Act: the run dies right after sending the third message back, before deleting it.
    let sent = 0;
    const crash = await redrive(target, {
      leaseSeconds: 30,
      afterSend: () => {
        sent += 1;
        if (sent === 3) throw new Error('simulated crash');
      },
    }).catch((error: Error) => error);
    const again = await redrive(target, {});
    // Assess
    expect(crash).toBeInstanceOf(Error);
    expect(again.moved).toBe(2);
    const moved = keysOf(await drain(target.queues.tasks));
    expect(new Set(moved)).toEqual(new Set(['k1', 'k2', 'k3', 'k4']));
    expect(moved).toHaveLength(5);
    expect(await drain(target.queues.tasksDeadLetter)).toEqual([]);
  });
});

describe('Function: redrivenBody', () => {
  it("starts a continued copy's or a finishing task's counts afresh and keeps its staged upload; other bodies go back as they were", () => {
    const continued = JSON.stringify({
      rule: 'a',
      sourceKey: 'k',
      continuation: { count: 601, upload: { id: 'u-1', partSize: 5242880, partsDone: 9 } },
    });
    expect(JSON.parse(redrivenBody(continued))).toEqual({
      rule: 'a',
      sourceKey: 'k',
      continuation: { count: 1, upload: { id: 'u-1', partSize: 5242880, partsDone: 9 } },
    });
    const finishing = JSON.stringify({
      rule: 'a',
      fanOut: {
        role: 'finish',
        upload: { id: 'u-2' },
        checks: 40,
        staged: 3,
        quiet: 2,
        reissued: 3,
      },
    });
    expect(JSON.parse(redrivenBody(finishing))).toEqual({
      rule: 'a',
      fanOut: {
        role: 'finish',
        upload: { id: 'u-2' },
        checks: 0,
        staged: 3,
        quiet: 0,
        reissued: 0,
      },
    });
    const plain = task('a', 'k');
    expect(redrivenBody(plain)).toBe(plain);
    expect(redrivenBody('not json')).toBe('not json');
  });
});

describe('Function: parseRedriveRequest', () => {
  it('takes the CLI filters by name and refuses an unknown key, naming it', () => {
    expect(parseRedriveRequest({ reason: 'permanent,not-found', olderThan: '2h', max: 5 })).toEqual(
      {
        reasons: ['permanent', 'not-found'],
        olderThanMs: 7_200_000,
        max: 5,
      },
    );
    expect(() => parseRedriveRequest({ reasons: 'permanent' })).toThrow(/reasons|Unrecognized/);
    expect(() => parseRedriveRequest({ olderThan: 'soon' })).toThrow(
      /olderThan: "soon" is not a duration/,
    );
  });
});

describe('Function: createRedriveHandler (serverless invoke -f redrive)', () => {
  it('re-drives with the filters of its input, and refuses an input it does not know', async () => {
    // Prepare
    const target = await pipelineTarget();
    await deadLetterTask(target, 'a', 'p/1', 'permanent', 'az://c/p/1: access denied');
    await deadLetterTask(target, 'a', 'p/2', 'not-found', 'az://c/p/2: container does not exist');
    const runtime = await buildRuntime({
      env: {
        ...emulatorVariables(),
        AWS_ENDPOINT_URL_SQS: emulatorEnv().s3Endpoint,
        S3AZ_EVENTS_QUEUE_URL: target.queues.events,
        S3AZ_EVENTS_DLQ_URL: target.queues.eventsDeadLetter,
        S3AZ_TASKS_QUEUE_URL: target.queues.tasks,
        S3AZ_TASKS_DLQ_URL: target.queues.tasksDeadLetter,
      },
      config: validateConfig({
        rules: [
          {
            name: 'a',
            s3: { bucket: 'bucket-a' },
            azure: { accountUrl: emulatorEnv().azureAccountUrl, container: 'c-a' },
          },
        ],
      }),
      sqs,
    });
    const handler = createRedriveHandler(() => Promise.resolve(runtime));
    // Act
    const refused = await handler({ reasn: 'permanent' }).catch((error: Error) => error);
    const summary = await handler({ reason: 'permanent' });
    // Assess
    expect((refused as Error).message).toMatch(/the redrive input is not valid/);
    expect(summary).toMatchObject({ moved: 1, skipped: 1, failed: [], stopped: false });
    expect(keysOf(await drain(target.queues.tasks))).toEqual(['p/1']);
    expect(keysOf(await drain(target.queues.tasksDeadLetter))).toEqual(['p/2']);
  });
});
