import {
  CreateBucketCommand,
  GetBucketNotificationConfigurationCommand,
  type NotificationConfiguration,
  PutBucketNotificationConfigurationCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
} from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import { UsageError } from '../../src/errors.ts';
import { setupS3 } from '../../src/ops/setup-s3.ts';
import { emulatorEnv, makeS3Client, makeSqsClient, uniqueName } from '../support/emulators.ts';

const s3 = makeS3Client();
const sqs = makeSqsClient();

async function queueArn(name: string): Promise<{ url: string; arn: string }> {
  const url =
    (await sqs.send(new CreateQueueCommand({ QueueName: uniqueName(name) }))).QueueUrl ?? '';
  const arn =
    (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] })))
      .Attributes?.QueueArn ?? '';
  return { url, arn };
}

async function configurationOf(bucket: string): Promise<NotificationConfiguration> {
  const { $metadata: _metadata, ...configuration } = await s3.send(
    new GetBucketNotificationConfigurationCommand({ Bucket: bucket }),
  );
  return configuration;
}

const rules = (bucket: string, extra: object[] = []) =>
  validateConfig({
    rules: [
      {
        name: 'landing',
        s3: { bucket, prefix: 'in/' },
        azure: { accountUrl: emulatorEnv().azureAccountUrl, container: 'c-landing' },
        deletes: 'mirror',
      },
      {
        name: 'nested',
        s3: { bucket, prefix: 'out/' },
        azure: { accountUrl: emulatorEnv().azureAccountUrl, container: 'c-out' },
        direction: 'azure-to-s3',
        deletes: 'ignore',
      },
      ...extra,
    ],
  }).rules;

describe('Function: setupS3 (against the S3 emulator)', () => {
  it("adds each rule's notification beside the bucket's own, and --remove restores it exactly", async () => {
    // Prepare: the bucket already notifies another queue of its logs, and EventBridge.
    const bucket = uniqueName('setup');
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const theirs = await queueArn('theirs');
    const events = await queueArn('events');
    await s3.send(
      new PutBucketNotificationConfigurationCommand({
        Bucket: bucket,
        NotificationConfiguration: {
          QueueConfigurations: [
            {
              Id: 'logs-to-their-queue',
              QueueArn: theirs.arn,
              Events: ['s3:ObjectCreated:*'],
              Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'logs/' }] } },
            },
          ],
          EventBridgeConfiguration: {},
        },
      }),
    );
    const original = await configurationOf(bucket);
    const options = {
      rules: rules(bucket),
      queueArn: events.arn,
      idPrefix: 's3az-prod-',
      clientFor: () => s3,
    };
    // Act
    const dry = await setupS3({ ...options, dryRun: true });
    const afterDry = await configurationOf(bucket);
    await setupS3(options);
    const added = await configurationOf(bucket);
    const again = await setupS3(options);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'in/a.txt', Body: 'a' }));
    const delivered = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: events.url,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
      }),
    );
    await setupS3({ ...options, remove: true });
    const removed = await configurationOf(bucket);
    // Assess
    expect(dry[0]).toMatchObject({ bucket, changes: true, kept: 1, conflicts: [] });
    expect(afterDry).toEqual(original);
    // Only the rule whose changes flow from S3 or whose deletes are mirrored needs events.
    expect(added.QueueConfigurations).toEqual([
      ...(original.QueueConfigurations ?? []),
      {
        Id: 's3az-prod-landing',
        QueueArn: events.arn,
        Events: ['s3:ObjectCreated:*', 's3:ObjectRemoved:*'],
        Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'in/' }] } },
      },
    ]);
    expect(added.EventBridgeConfiguration).toEqual({});
    expect(again[0]?.changes).toBe(false);
    expect(delivered.Messages?.map((message) => message.Body).join('\n')).toContain(
      '"key":"in/a.txt"',
    );
    expect(removed).toEqual(original);
  });

  it('refuses, naming it, a configuration of the bucket that overlaps, and changes nothing', async () => {
    const bucket = uniqueName('setup');
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const theirs = await queueArn('theirs');
    const events = await queueArn('events');
    await s3.send(
      new PutBucketNotificationConfigurationCommand({
        Bucket: bucket,
        NotificationConfiguration: {
          QueueConfigurations: [
            { Id: 'everything-created', QueueArn: theirs.arn, Events: ['s3:ObjectCreated:Put'] },
          ],
        },
      }),
    );
    const before = await configurationOf(bucket);

    const error = await setupS3({
      rules: rules(bucket),
      queueArn: events.arn,
      idPrefix: 's3az-prod-',
      clientFor: () => s3,
    }).catch((caught: Error) => caught);

    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toMatch(
      /^s3:\/\/setup-[0-9a-f]+: its queue configuration "everything-created" \(s3:ObjectCreated:Put under ""\) overlaps s3:ObjectCreated:\*, s3:ObjectRemoved:\* under "in\/", which S3 refuses/,
    );
    expect(await configurationOf(bucket)).toEqual(before);
    // The emulator refuses such a configuration too, as S3 does.
    await expect(
      s3.send(
        new PutBucketNotificationConfigurationCommand({
          Bucket: bucket,
          NotificationConfiguration: {
            QueueConfigurations: [
              { Id: 'a', QueueArn: theirs.arn, Events: ['s3:ObjectCreated:*'] },
              {
                Id: 'b',
                QueueArn: events.arn,
                Events: ['s3:ObjectCreated:Put'],
                Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'in/' }] } },
              },
            ],
          },
        }),
      ),
    ).rejects.toThrow(/overlapping/);
  });
});
