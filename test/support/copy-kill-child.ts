/**
 * A replicator process for test/integration/copy-kill.test.ts, to be killed mid-copy: receives
 * one task message from `S3AZ_KILL_QUEUE_URL` and runs it with `processTaskRecord` against the
 * emulators the environment names (the standard AWS and Azure variables). It prints
 * `staged <partNumber>` on stdout after each part the destination has staged, and nothing
 * else; after `S3AZ_KILL_HOLD_AFTER` parts each worker that finishes a part waits forever
 * instead of going on, so the parent's SIGKILL lands mid-copy every time rather than racing the
 * commit (parts other workers have in flight still run until the kill).
 */
import { type Message, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { BlobServiceClient } from '@azure/storage-blob';
import type { SQSRecord } from 'aws-lambda';
import { validateConfig } from '../../src/config/load.ts';
import { recordOf } from '../../src/local/queue-runner.ts';
import { processTaskRecord } from '../../src/queue/task-record.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { makeS3Client, makeSqsClient } from '../../src/stores/clients.ts';
import type { ObjectStore } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** The store, printing a line per staged part and holding every worker after `holdAfter`. */
function announcingParts<T extends ObjectStore>(store: T, holdAfter: number): T {
  let staged = 0;
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      // stagePart, stagePartStream, stagePartFromUrl: every way a store stages a part.
      if (typeof property !== 'string' || !property.startsWith('stagePart')) {
        return value.bind(target);
      }
      return async (...args: unknown[]) => {
        const result = (await (value as (...a: unknown[]) => unknown).apply(target, args)) as {
          partNumber: number;
        };
        staged += 1;
        process.stdout.write(`staged ${result.partNumber}\n`);
        if (staged >= holdAfter) {
          // Keeps the process alive while every worker waits here for the kill.
          setInterval(() => undefined, 60_000);
          await new Promise<never>(() => undefined);
        }
        return result;
      };
    },
  });
}

async function main(): Promise<void> {
  const queueUrl = required('S3AZ_KILL_QUEUE_URL');
  const holdAfter = Number(required('S3AZ_KILL_HOLD_AFTER'));
  const config = validateConfig(JSON.parse(required('S3AZ_KILL_CONFIG')));
  const rule = config.rules[0];
  if (!rule) throw new Error('S3AZ_KILL_CONFIG has no rule');
  const sqs = makeSqsClient();
  const s3 = new S3ObjectStore(makeS3Client(), rule.s3.bucket);
  const azure = new AzureBlobObjectStore(
    BlobServiceClient.fromConnectionString(
      required('AZURE_STORAGE_CONNECTION_STRING'),
    ).getContainerClient(rule.azure.container),
  );
  const out = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queueUrl,
      MaxNumberOfMessages: 1,
      WaitTimeSeconds: 10,
      AttributeNames: ['All'],
    }),
  );
  const message: Message | undefined = out.Messages?.[0];
  if (!message) throw new Error('no task message arrived');
  const record: SQSRecord = recordOf(
    message,
    'arn:aws:sqs:us-east-1:000000000000:tasks',
    'us-east-1',
  );
  const outcome = await processTaskRecord(record, {
    sqs,
    queueUrl,
    deadLetterQueueUrl: required('S3AZ_KILL_DLQ_URL'),
    rules: config.rules,
    storesFor: (_rule, task) =>
      task.sourceSide === 's3'
        ? { source: s3, destination: announcingParts(azure, holdAfter) }
        : { source: azure, destination: announcingParts(s3, holdAfter) },
  });
  // Reached only when the copy was not held (the parent then fails on the missing kill).
  process.stdout.write(`done ${JSON.stringify(outcome)}\n`);
}

main().catch((error: unknown) => {
  // The message only: never the environment, which holds the emulators' keys.
  process.stderr.write(
    `copy-kill-child: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});
