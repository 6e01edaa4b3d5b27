import { CreateQueueCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.ts';
import { resolveTarget } from '../../src/ops/target.ts';
import { startCloudFormationStandIn } from '../support/cloudformation.ts';
import { emulatorEnv, emulatorVariables, makeSqsClient, uniqueName } from '../support/emulators.ts';

const stacks = new Map<string, Record<string, string>>();
let standIn: Awaited<ReturnType<typeof startCloudFormationStandIn>>;
let endpoint: string;

beforeAll(async () => {
  standIn = await startCloudFormationStandIn(stacks);
  endpoint = standIn.url;
});

afterAll(() => standIn.close());

const env = () => ({
  ...emulatorVariables(),
  AWS_ENDPOINT_URL_SQS: emulatorEnv().s3Endpoint,
  AWS_ENDPOINT_URL_CLOUDFORMATION: endpoint,
});

async function queueUrls() {
  const sqs = makeSqsClient();
  const queue = async (name: string) =>
    (await sqs.send(new CreateQueueCommand({ QueueName: uniqueName(name) }))).QueueUrl ?? '';
  return {
    EventsQueueUrl: await queue('events'),
    EventsDeadLetterQueueUrl: await queue('events-dlq'),
    TasksQueueUrl: await queue('tasks'),
    TasksDeadLetterQueueUrl: await queue('tasks-dlq'),
  };
}

describe('Function: resolveTarget (a deployed stack)', () => {
  it('finds the queues in the outputs of <service>-<stage>, or of the stack --stack names', async () => {
    const outputs = await queueUrls();
    stacks.set('s3-azure-replicator-prod', outputs);
    stacks.set('my-mirror', outputs);

    const byStage = await resolveTarget({ stage: 'prod', region: 'eu-west-1' }, env());
    const byName = await resolveTarget({ stack: 'my-mirror' }, env());

    expect(byStage.name).toBe('stack s3-azure-replicator-prod (eu-west-1)');
    expect(byStage.queues).toEqual({
      events: outputs.EventsQueueUrl,
      eventsDeadLetter: outputs.EventsDeadLetterQueueUrl,
      tasks: outputs.TasksQueueUrl,
      tasksDeadLetter: outputs.TasksDeadLetterQueueUrl,
    });
    expect(byName.queues.tasks).toBe(outputs.TasksQueueUrl);
    expect(standIn.asked).toContain('DescribeStacks my-mirror');
  });

  it('names a wrong stack, a stack without the outputs, and a queue it cannot reach', async () => {
    const missing = await resolveTarget({ stage: 'nope', region: 'eu-west-1' }, env()).catch(
      (error: Error) => error,
    );
    expect(missing).toBeInstanceOf(UsageError);
    expect((missing as Error).message).toBe(
      'stack s3-azure-replicator-nope (eu-west-1) does not exist; name it with --stack, or --stage and --region as deployed',
    );

    stacks.set('other-stack', { SomethingElse: 'x' });
    await expect(resolveTarget({ stack: 'other-stack' }, env())).rejects.toThrow(
      /stack other-stack \(us-east-1\) has no output EventsQueueUrl/,
    );

    const outputs = await queueUrls();
    const gone = outputs.TasksDeadLetterQueueUrl.replace(/[^/]+$/, 'no-such-queue');
    stacks.set('broken', { ...outputs, TasksDeadLetterQueueUrl: gone });
    await expect(resolveTarget({ stack: 'broken' }, env())).rejects.toThrow(
      `stack broken (us-east-1): the queue ${gone} cannot be reached`,
    );
  });

  it('refuses --local together with a stack', async () => {
    await expect(resolveTarget({ local: true, stage: 'prod' }, env())).rejects.toThrow(
      '--local works on the local mirror: leave out --stack and --stage',
    );
  });
});
