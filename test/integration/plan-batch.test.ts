import { type Message, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import type { CopyTask } from '../../src/core/route.ts';
import { planBatch } from '../../src/queue/plan-batch.ts';
import { emulatorEnv, makeSqsClient, planQueues, uniqueName } from '../support/emulators.ts';
import { nextS3Sequencer, s3Notification, s3Record } from '../support/notifications.ts';

const USER = 'AWS:AIDAPLANBATCHUSER';

/** An events-queue record as Lambda hands it to the plan step. */
function recordWith(body: string): SQSRecord {
  const messageId = uniqueName('message');
  return {
    messageId,
    receiptHandle: messageId,
    body,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(Date.now()),
      SenderId: 'local',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:0:events',
    awsRegion: 'us-east-1',
  };
}

describe('Function: planBatch (tasks of one key in one batch)', () => {
  it("sends a user's delete beside the newer event of a replica written back after it", async () => {
    // Prepare: a user writes and then deletes s3 `k`; before the delete's task ran, the copy
    // step wrote a replica back to `k`, whose event (through EventBridge: no writer) is newest.
    const sqs = makeSqsClient();
    const queues = await planQueues(sqs);
    const bucket = uniqueName('plan');
    const rules = validateConfig({
      rules: [
        {
          name: 'plan',
          s3: { bucket },
          azure: { accountUrl: emulatorEnv().azureAccountUrl, container: uniqueName('plan') },
          deletes: 'mirror',
        },
      ],
    }).rules;
    const userWrite = s3Record(
      'ObjectCreated:Put',
      bucket,
      'k',
      { etag: '"0cc175b9c0f1b6a831c399e269772661"', size: 1, sequencer: nextS3Sequencer() },
      USER,
    );
    const userDelete = s3Record(
      'ObjectRemoved:Delete',
      bucket,
      'k',
      { sequencer: nextS3Sequencer() },
      USER,
    );
    const writeBack = s3Record(
      'ObjectCreated:Put',
      bucket,
      'k',
      { etag: '"92eb5ffee6ae2fec3ad71c777531578f"', size: 1, sequencer: nextS3Sequencer() },
      null,
    );

    // Act: the three events in one batch, the newest first.
    const response = await planBatch(
      [writeBack, userDelete, userWrite].map((record) => recordWith(s3Notification(record))),
      {
        sqs,
        rules,
        eventsQueueUrl: queues.events,
        eventsDeadLetterQueueUrl: queues.eventsDeadLetter,
        tasksQueueUrl: queues.tasks,
        storesOf: () => Promise.reject(new Error('no directory to expand here')),
        ownS3Principals: ['AWS:LOCALREPLICATORPLAN'],
      },
    );

    // Assess: one task of each kind; the user's delete is not dropped for the newer event.
    expect(response.batchItemFailures).toEqual([]);
    const messages: Message[] = [];
    for (;;) {
      const { Messages = [] } = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queues.tasks, MaxNumberOfMessages: 10 }),
      );
      if (Messages.length === 0) break;
      messages.push(...Messages);
    }
    const tasks = messages.map((message) => JSON.parse(message.Body ?? '{}') as CopyTask);
    expect(tasks.map((task) => [task.kind, task.sequencer]).sort()).toEqual([
      ['created', writeBack.s3.object.sequencer],
      ['deleted', userDelete.s3.object.sequencer],
    ]);
    expect(tasks.find((task) => task.kind === 'deleted')).toMatchObject({
      sourceKey: 'k',
      writtenBy: 'user',
    });
    expect(tasks.find((task) => task.kind === 'created')).not.toHaveProperty('writtenBy');
  });
});
