import { randomBytes } from 'node:crypto';
import { S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { BlobServiceClient } from '@azure/storage-blob';
import { inject } from 'vitest';
import { makeS3Client as makeClient, makeSqsClient as makeSqs } from '../../src/stores/clients.ts';
import type { EmulatorEnv } from './global-setup.ts';

/** Endpoints and credentials of the emulators the global setup started. */
export function emulatorEnv(): EmulatorEnv {
  return inject('emulators');
}

/** The environment variables a user would set to point the SDKs and `s3az` at the emulators. */
export function emulatorVariables(): Record<string, string> {
  const env = emulatorEnv();
  return {
    AWS_ENDPOINT_URL_S3: env.s3Endpoint,
    AWS_REGION: env.region,
    AWS_ACCESS_KEY_ID: env.accessKeyId,
    AWS_SECRET_ACCESS_KEY: env.secretAccessKey,
    AZURE_STORAGE_CONNECTION_STRING: env.azureConnectionString,
  };
}

/** An S3 client for the S3 emulator, built the way the project builds its own. */
export function makeS3Client(): S3Client {
  return makeClient(emulatorVariables());
}

/**
 * An S3 client with the SDK's own defaults, as any user's would be: a CRC32 on every upload,
 * in a header for buffers and in an aws-chunked trailer for streams.
 */
export function makePlainS3Client(): S3Client {
  const env = emulatorEnv();
  return new S3Client({
    endpoint: env.s3Endpoint,
    forcePathStyle: true,
    region: env.region,
    credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
  });
}

/** An SQS client for the emulator's SQS (same port as S3). */
export function makeSqsClient(): SQSClient {
  const env = emulatorVariables();
  return makeSqs({ ...env, AWS_ENDPOINT_URL_SQS: env.AWS_ENDPOINT_URL_S3 });
}

/** A BlobServiceClient for the public Azure endpoint (the shim in front of Azurite). */
export function makeBlobServiceClient(): BlobServiceClient {
  return BlobServiceClient.fromConnectionString(emulatorEnv().azureConnectionString);
}

/** A fresh bucket or container name, valid on both stores. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** Messages in a queue: visible, in flight, or delayed. */
export async function queueDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const out = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: [
        'ApproximateNumberOfMessages',
        'ApproximateNumberOfMessagesNotVisible',
        'ApproximateNumberOfMessagesDelayed',
      ],
    }),
  );
  return (
    Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
    Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0) +
    Number(out.Attributes?.ApproximateNumberOfMessagesDelayed ?? 0)
  );
}

/** New queues for the plan step (events, its dead-letter queue, tasks), with default settings. */
export async function planQueues(sqs: SQSClient) {
  const queue = async (name: string) =>
    (await sqs.send(new CreateQueueCommand({ QueueName: uniqueName(name) }))).QueueUrl ?? '';
  return {
    events: await queue('events'),
    eventsDeadLetter: await queue('events-dlq'),
    tasks: await queue('tasks'),
  };
}
