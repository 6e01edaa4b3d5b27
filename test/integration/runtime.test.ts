import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { CreateQueueCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  generateAccountSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createCopyHandler } from '../../handlers/copy.ts';
import { serviceFromSecret } from '../../src/auth/azure-credential.ts';
import { SecretsManagerSource } from '../../src/auth/secrets.ts';
import { ConfigError, validateConfig } from '../../src/config/load.ts';
import { PermanentError, UsageError } from '../../src/errors.ts';
import { QueueRunner } from '../../src/local/queue-runner.ts';
import { COPY_TIMEOUT_SECONDS } from '../../src/queue/timing.ts';
import { buildRuntime } from '../../src/runtime/runtime.ts';
import {
  emulatorEnv,
  emulatorVariables,
  makeBlobServiceClient,
  makeS3Client,
  makeSqsClient,
  uniqueName,
} from '../support/emulators.ts';
import { readAll } from '../support/streams.ts';

/**
 * Secrets Manager has no emulator here, so this is a stand-in at the SDK boundary: an HTTP
 * endpoint that speaks the service's JSON protocol for GetSecretValue, as the SDK calls it.
 */
let server: Server;
let endpoint: string;
const secrets = new Map<string, string>();
const requests: string[] = [];

const bodyOf = async (request: IncomingMessage) => (await readAll(request)).toString('utf8');

beforeAll(async () => {
  server = createServer(async (request, response) => {
    const target = request.headers['x-amz-target'];
    const { SecretId } = JSON.parse(await bodyOf(request)) as { SecretId: string };
    requests.push(`${target} ${SecretId}`);
    const value = secrets.get(SecretId);
    response.setHeader('content-type', 'application/x-amz-json-1.1');
    if (target !== 'secretsmanager.GetSecretValue' || value === undefined) {
      response.statusCode = 400;
      response.end(
        JSON.stringify({
          __type: 'ResourceNotFoundException',
          message: "Secrets Manager can't find the specified secret.",
        }),
      );
      return;
    }
    response.end(JSON.stringify({ ARN: SecretId, Name: SecretId, SecretString: value }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const secretsClient = () =>
  new SecretsManagerClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });

describe('Class: SecretsManagerSource', () => {
  it('reads a secret once and serves it from memory after', async () => {
    const arn = `arn:aws:secretsmanager:us-east-1:1:secret:${uniqueName('s')}`;
    secrets.set(arn, 'value-1');
    const source = new SecretsManagerSource(secretsClient());
    expect(await source.get(arn)).toBe('value-1');
    expect(await source.get(arn)).toBe('value-1');
    expect(requests.filter((line) => line.endsWith(arn))).toHaveLength(1);
  });

  it('names the secret, as a permanent error, when it does not exist', async () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:1:secret:missing';
    const error = await new SecretsManagerSource(secretsClient()).get(arn).catch((e) => e);
    expect(error).toBeInstanceOf(PermanentError);
    expect(error.message).toContain(arn);
    expect(error.message).toContain('ResourceNotFoundException');
  });
});

const rule = (extra: Record<string, unknown> = {}) => ({
  name: 'r',
  s3: { bucket: 'bucket-a' },
  azure: { accountUrl: emulatorEnv().azureAccountUrl, container: 'container-a', ...extra },
});

describe('Function: buildRuntime', () => {
  it('reads the configuration file S3AZ_CONFIG names, and says which variable is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 's3az-runtime-'));
    await writeFile(join(dir, 'replication.yml'), JSON.stringify({ rules: [rule()] }));
    const runtime = await buildRuntime({
      env: { ...emulatorVariables(), S3AZ_CONFIG: 'replication.yml', LAMBDA_TASK_ROOT: dir },
    });
    expect(runtime.config.rules[0]?.name).toBe('r');
    expect(() => runtime.queueUrl('tasks')).toThrow(/S3AZ_TASKS_QUEUE_URL is not set/);
    await expect(runtime.webhookAuth()).rejects.toThrow(/eventGrid\.auth is not configured/);
    await expect(buildRuntime({ env: {} })).rejects.toThrow(/S3AZ_CONFIG is not set/);
    await expect(
      buildRuntime({ env: { S3AZ_CONFIG: join(dir, 'replication.yml'), S3AZ_MAX_RECEIVES: 'x' } }),
    ).rejects.toThrow(ConfigError);
  });

  it("takes a rule's Azure credential and the webhook secret from Secrets Manager", async () => {
    const keyArn = `arn:aws:secretsmanager:us-east-1:1:secret:${uniqueName('azure')}`;
    const hookArn = `arn:aws:secretsmanager:us-east-1:1:secret:${uniqueName('hook')}`;
    const { azureAccountKey } = emulatorEnv();
    secrets.set(keyArn, azureAccountKey);
    secrets.set(hookArn, 'hook-secret\n');
    const { AZURE_STORAGE_CONNECTION_STRING: _none, ...withoutAzure } = emulatorVariables();
    const runtime = await buildRuntime({
      env: { ...withoutAzure, AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint },
      config: {
        rules: [
          {
            ...rule({ credential: { secretArn: keyArn } }),
            s3: { bucket: 'bucket-a', prefix: '' },
            azure: {
              accountUrl: emulatorEnv().azureAccountUrl,
              container: 'container-a',
              prefix: '',
              credential: { secretArn: keyArn },
            },
            direction: 'both',
            deletes: 'ignore',
            conflictWinner: 's3',
            include: [],
            exclude: [],
            partSize: '8MiB',
            concurrency: 8,
            fanOutAbove: '8GiB',
            fanOutRangeSize: '1GiB',
          },
        ],
        eventGrid: { auth: { mode: 'shared-secret', secretArn: hookArn } },
      },
    });
    const [only] = runtime.config.rules;
    if (!only) throw new Error('no rule');
    const { azure } = await runtime.storesOf(only);
    // The key read from the secret signs requests Azurite accepts.
    await makeBlobServiceClient().getContainerClient('container-a').createIfNotExists();
    await expect(azure.checkContainer()).resolves.toBeUndefined();
    expect(await runtime.webhookAuth()).toEqual({ mode: 'shared-secret', secret: 'hook-secret' });
  });

  it("passes Event Grid's application ids of another cloud to the webhook's Entra check", async () => {
    const ids = ['11111111-2222-3333-4444-555555555555'];
    const runtime = await buildRuntime({
      env: {},
      config: validateConfig({
        rules: [
          {
            name: 'r',
            s3: { bucket: 'bucket-b' },
            azure: { accountUrl: 'https://acct.blob.core.windows.net', container: 'container-c' },
          },
        ],
        eventGrid: {
          auth: { mode: 'entra', tenantId: 't', audience: 'api://a', eventGridAppIds: ids },
        },
      }),
    });
    expect(await runtime.webhookAuth()).toMatchObject({ mode: 'entra', eventGridAppIds: ids });
  });
});

describe('Function: serviceFromSecret', () => {
  const url = 'https://acct.blob.core.windows.net';

  it('understands connection strings, account keys, SAS tokens and service principals', () => {
    const key = Buffer.alloc(64, 7).toString('base64');
    expect(
      serviceFromSecret(url, `AccountName=acct;AccountKey=${key}`, 'x').credential.constructor.name,
    ).toBe('StorageSharedKeyCredential');
    expect(serviceFromSecret(url, key, 'x').credential.constructor.name).toBe(
      'StorageSharedKeyCredential',
    );
    expect(serviceFromSecret(url, '?sv=2022-11-02&sig=abc', 'x').url).toContain('sig=abc');
    expect(
      serviceFromSecret(url, '{"tenantId":"t","clientId":"c","clientSecret":"s"}', 'x').credential
        .constructor.name,
    ).toBe('ClientSecretCredential');
  });

  it('says which secret is unusable without printing what it holds', () => {
    const error = (() => {
      try {
        serviceFromSecret(url, 'not a key: hunter2', 'secret arn:aws:secretsmanager:x');
      } catch (caught) {
        return caught as Error;
      }
    })();
    expect(error).toBeInstanceOf(UsageError);
    expect(error?.message).toContain('arn:aws:secretsmanager:x');
    expect(error?.message).not.toContain('hunter2');
  });
});

describe('Module: handlers (as Lambda loads them)', () => {
  it('builds the runtime from the environment on the first call and answers the handshake', async () => {
    const dir = await mkdtemp(join(tmpdir(), 's3az-handler-'));
    const config = join(dir, 'replication.json');
    await writeFile(
      config,
      JSON.stringify({
        rules: [rule()],
        eventGrid: { auth: { mode: 'shared-secret', secretEnv: 'HOOK' } },
      }),
    );
    vi.stubEnv('S3AZ_CONFIG', config);
    vi.stubEnv('HOOK', 'the-secret');
    vi.resetModules();
    const { handler } = await import('../../handlers/eventgrid.ts');
    const call = (headers: Record<string, string>) =>
      handler(
        {
          version: '2.0',
          headers,
          requestContext: { http: { method: 'POST' } },
          body: JSON.stringify([
            {
              id: '1',
              topic: '/subscriptions/x',
              subject: '',
              eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
              eventTime: new Date().toISOString(),
              data: { validationCode: 'C1' },
              dataVersion: '2',
            },
          ]),
          isBase64Encoded: false,
        } as never,
        {
          functionName: 'eventgrid',
          awsRequestId: '1',
          getRemainingTimeInMillis: () => 29_000,
        } as never,
      );
    expect(await call({ 'x-s3az-secret': 'the-secret' })).toMatchObject({
      statusCode: 200,
      body: JSON.stringify({ validationResponse: 'C1' }),
    });
    expect(await call({ 'x-s3az-secret': 'wrong' })).toMatchObject({ statusCode: 401 });
    vi.unstubAllEnvs();
  });
});

describe('Function: createCopyHandler (a rotated Azure credential)', () => {
  /**
   * A bucket holding one object, a container, the two task queues, and a runtime whose rule
   * reads its Azure credential from the secret `arn`.
   */
  async function setup(arn: string) {
    const env = emulatorEnv();
    const s3 = makeS3Client();
    const sqs = makeSqsClient();
    const bucket = uniqueName('rot');
    const container = uniqueName('rot');
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'rotated' }));
    await makeBlobServiceClient().getContainerClient(container).create();
    const queue = async (name: string) =>
      (await sqs.send(new CreateQueueCommand({ QueueName: uniqueName(name) }))).QueueUrl ?? '';
    const tasks = await queue('tasks');
    const deadLetters = await queue('dlq');
    const { AZURE_STORAGE_CONNECTION_STRING: _none, ...withoutAzure } = emulatorVariables();
    const runtime = await buildRuntime({
      env: {
        ...withoutAzure,
        AWS_ENDPOINT_URL_SQS: env.s3Endpoint,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint,
        S3AZ_TASKS_QUEUE_URL: tasks,
        S3AZ_TASKS_DLQ_URL: deadLetters,
      },
      config: validateConfig({
        rules: [
          {
            name: 'rot',
            s3: { bucket },
            azure: { accountUrl: env.azureAccountUrl, container, credential: { secretArn: arn } },
          },
        ],
      }),
    });
    const task = {
      rule: 'rot',
      kind: 'created',
      sourceSide: 's3',
      sourceContainer: bucket,
      sourceKey: 'k',
      destinationContainer: container,
      destinationKey: 'k',
      eventTime: new Date().toISOString(),
      correlationId: 'c',
    };
    // An earlier task built the rule's stores with the secret's value at that time.
    const [rule] = runtime.config.rules;
    if (rule) await runtime.storesOf(rule);
    const runner = new QueueRunner({
      sqs,
      queueUrl: tasks,
      handler: createCopyHandler(() => Promise.resolve(runtime)),
      functionName: 'copy',
      batchSize: 1,
      timeoutSeconds: COPY_TIMEOUT_SECONDS,
    });
    /** Sends the task and runs the copy function on it once. */
    const copy = async () => {
      await sqs.send(
        new SendMessageCommand({ QueueUrl: tasks, MessageBody: JSON.stringify(task) }),
      );
      expect(await runner.pollOnce(5)).toBe(1);
    };
    const reads = () => requests.filter((line) => line.endsWith(arn)).length;
    const blob = makeBlobServiceClient().getContainerClient(container).getBlockBlobClient('k');
    /** Reason and error of each dead letter. */
    const deadLettered = async () => {
      const { Messages = [] } = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: deadLetters,
          MaxNumberOfMessages: 10,
          MessageAttributeNames: ['All'],
        }),
      );
      return Messages.map((message) => [
        message.MessageAttributes?.reason?.StringValue,
        message.MessageAttributes?.error?.StringValue,
      ]);
    };
    return { copy, reads, blob, deadLettered };
  }

  const wrongKey = () => randomBytes(64).toString('base64');

  it('reads the secret once more when Azure refuses the key, and copies with the rotated key', async () => {
    // Prepare: the secret was rotated after the runtime first read it.
    const arn = `arn:aws:secretsmanager:us-east-1:1:secret:${uniqueName('rotated')}`;
    secrets.set(arn, wrongKey());
    const { copy, reads, blob, deadLettered } = await setup(arn);
    secrets.set(arn, emulatorEnv().azureAccountKey);
    // Act
    await copy();
    // Assess
    expect(await deadLettered()).toEqual([]);
    expect((await blob.downloadToBuffer()).toString()).toBe('rotated');
    expect(reads()).toBe(2);
  });

  it('renews an expired SAS the same way', async () => {
    const env = emulatorEnv();
    const sas = (expiresOn: Date) =>
      generateAccountSASQueryParameters(
        {
          permissions: AccountSASPermissions.parse('rwdlac'),
          services: AccountSASServices.parse('b').toString(),
          resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
          expiresOn,
        },
        new StorageSharedKeyCredential(env.azureAccountName, env.azureAccountKey),
      ).toString();
    const arn = `arn:aws:secretsmanager:us-east-1:1:secret:${uniqueName('sas')}`;
    secrets.set(arn, sas(new Date(Date.now() - 60_000)));
    const { copy, reads, blob, deadLettered } = await setup(arn);
    secrets.set(arn, sas(new Date(Date.now() + 3_600_000)));

    await copy();
    expect(await deadLettered()).toEqual([]);
    expect((await blob.downloadToBuffer()).toString()).toBe('rotated');
    expect(reads()).toBe(2);
  });

  it('dead-letters a refused credential that was not rotated, reading it again at most once a minute', async () => {
    const arn = `arn:aws:secretsmanager:us-east-1:1:secret:${uniqueName('wrong')}`;
    secrets.set(arn, wrongKey());
    const { copy, reads, blob, deadLettered } = await setup(arn);

    await copy();
    await copy();

    const reasons = await deadLettered();
    expect(reasons).toHaveLength(2);
    for (const [reason, error] of reasons) {
      expect(reason).toBe('permanent');
      expect(error).toContain('the Azure credential was refused (AuthenticationFailed)');
    }
    // One read to build the stores, one after the first refusal, none after the second.
    expect(reads()).toBe(2);
    expect(await blob.exists()).toBe(false);
  });
});
