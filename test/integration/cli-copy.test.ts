import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import {
  emulatorEnv,
  makeBlobServiceClient,
  makeS3Client,
  uniqueName,
} from '../support/emulators.ts';
import { putObject, readAll } from '../support/streams.ts';

const BIN = new URL('../../src/cli/s3az.js', import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cliEnv(overrides: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env = emulatorEnv();
  const base: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    AWS_ENDPOINT_URL_S3: env.s3Endpoint,
    AWS_REGION: env.region,
    AWS_ACCESS_KEY_ID: env.accessKeyId,
    AWS_SECRET_ACCESS_KEY: env.secretAccessKey,
    AZURE_STORAGE_CONNECTION_STRING: env.azureConnectionString,
  };
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete base[name];
    else base[name] = value;
  }
  return base;
}

function s3az(args: string[], env = cliEnv()): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let bucket: string;
let container: string;
let s3: S3ObjectStore;
let azure: AzureBlobObjectStore;

beforeAll(async () => {
  const client = makeS3Client();
  bucket = uniqueName('cli');
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  s3 = new S3ObjectStore(client, bucket);
  const containerClient = makeBlobServiceClient().getContainerClient(uniqueName('cli'));
  await containerClient.create();
  container = containerClient.containerName;
  azure = new AzureBlobObjectStore(containerClient);
});

function expectOneLineError(run: Run, pattern: RegExp) {
  expect(run.code).not.toBe(0);
  expect(run.stdout).toBe('');
  // One line in the `s3az: ...` form, ended, as every error of the command.
  expect(run.stderr).toMatch(/^s3az: [^\n]+\n$/);
  const lines = run.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(run.stderr).not.toMatch(/\bat .+:\d+:\d+/);
}

describe('Command: s3az copy', () => {
  it('copies one object S3 -> Azure and prints a JSON summary', async () => {
    const body = randomBytes(9 * 1024 * 1024 + 3);
    await putObject(s3, 'one/data.bin', body);
    const run = await s3az([
      'copy',
      `s3://${bucket}/one/data.bin`,
      `az://${container}/copied/data.bin`,
      '--part-size',
      '4MiB',
      '--json',
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({ objects: 1, failed: 0, bytes: body.length });
    expect(typeof summary.seconds).toBe('number');
    expect(typeof summary.mibPerSecond).toBe('number');
    expect(sha(await readAll((await azure.get('copied/data.bin')).body))).toBe(sha(body));
  });

  it('copies Azure -> S3 given a full account URL, streaming when asked', async () => {
    const body = randomBytes(100_000);
    await azure.put('url/a b+c.bin', body, {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    const url = `${emulatorEnv().azureAccountUrl}/${container}/${encodeURIComponent('url/a b+c.bin').replace(/%2F/g, '/')}`;
    const run = await s3az(['copy', url, `s3://${bucket}/from-url/`, '--stream']);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/copied .* -> s3:\/\/.*\/from-url\/a b\+c\.bin/);
    expect(sha(await readAll((await s3.get('from-url/a b+c.bin')).body))).toBe(sha(body));
  });

  it('copies every object under a prefix', async () => {
    const keys = ['tree/a.txt', 'tree/sub/b.txt', 'tree/sub/deeper/c.txt'];
    for (const key of keys) {
      await s3.put(key, Buffer.from(key), {
        properties: {},
        metadata: {},
        condition: { kind: 'any' },
      });
    }
    const run = await s3az(['copy', `s3://${bucket}/tree/`, `az://${container}/mirror/`, '--json']);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ objects: 3, failed: 0 });
    for (const key of keys) {
      const copied = `mirror/${key.slice('tree/'.length)}`;
      expect((await readAll((await azure.get(copied)).body)).toString()).toBe(key);
    }
  });

  it.each([
    [['copy'], /^s3az: missing required argument 'source'$/],
    [['copy', 's3://only-one-arg'], /^s3az: missing required argument 'destination'$/],
    [['copy', 'ftp://x/y', 's3://bucket-x/y'], /not a location/],
    [['copy', 's3://Bad_Bucket/k', 'az://container-x/k'], /not a valid S3 bucket name/],
    [['copy', 's3://bucket-x/k', 'az://container-x/k', '--part-size', '8XB'], /8XB/],
    [['copy', 's3://bucket-x/k', 'az://container-x/k', '--concurrency', '0'], /--concurrency/],
    [['copy', 's3://bucket-x/k', 'az://container-x/k', '--bogus'], /unknown option '--bogus'/],
  ])('refuses bad arguments %j with one line and exit code 2', async (args, pattern) => {
    const run = await s3az(args);
    expectOneLineError(run, pattern);
    expect(run.code).toBe(2);
  });

  it('names a missing bucket', async () => {
    const run = await s3az(['copy', 's3://no-such-bucket-here/k', `az://${container}/k`]);
    expectOneLineError(run, /s3:\/\/no-such-bucket-here: bucket does not exist/);
    expect(run.code).toBe(1);
  });

  it('names a missing container', async () => {
    await s3.put('x', Buffer.from('x'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    const run = await s3az(['copy', `s3://${bucket}/x`, 'az://no-such-container/x']);
    expectOneLineError(run, /az:\/\/no-such-container: container does not exist/);
  });

  it('names a missing object', async () => {
    const run = await s3az(['copy', `s3://${bucket}/nope.bin`, `az://${container}/nope.bin`]);
    expectOneLineError(run, /s3:\/\/.*\/nope\.bin: source object does not exist/);
  });

  it('says wrong Azure credentials are refused, without printing them', async () => {
    const env = emulatorEnv();
    const wrongKey = Buffer.from('not the key at all, not the key at all').toString('base64');
    const run = await s3az(
      ['copy', `s3://${bucket}/x`, `az://${container}/x`],
      cliEnv({
        AZURE_STORAGE_CONNECTION_STRING: env.azureConnectionString.replace(
          env.azureAccountKey,
          wrongKey,
        ),
      }),
    );
    expectOneLineError(run, /the Azure credential was refused \(AuthenticationFailed\)/);
    expect(run.stderr).not.toContain(wrongKey);
  });

  it('says wrong AWS credentials are refused, without printing them', async () => {
    await s3.put('y', Buffer.from('y'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    const run = await s3az(
      ['copy', `s3://${bucket}/y`, `az://${container}/y`],
      cliEnv({
        AWS_ACCESS_KEY_ID: 'AKIAWRONGWRONGWRONG1',
        AWS_SECRET_ACCESS_KEY: 'wrong-secret-value',
      }),
    );
    expectOneLineError(run, /access denied/);
    expect(run.stderr).not.toContain('wrong-secret-value');
  });

  it('names the account of a URL the environment has no credential for, and why', async () => {
    const env = emulatorEnv();
    const otherAccount = env.azureAccountUrl.replace(/\/[^/]+$/, '/otheraccount');
    const run = await s3az(['copy', `s3://${bucket}/x`, `${otherAccount}/${container}/x`]);
    expectOneLineError(run, /no credential for the account "otheraccount"/);
    expect(run.stderr).toContain(
      `s3az: ${otherAccount}/${container}: no credential for the account "otheraccount" (the environment's credential is for ${env.azureAccountUrl}, and Microsoft Entra ID tokens need https); set AZURE_STORAGE_ACCOUNT=otheraccount`,
    );
    expect(run.code).toBe(2);
  });

  it('explains that az:// needs an account when none is configured', async () => {
    const run = await s3az(
      ['copy', `s3://${bucket}/y`, `az://${container}/y`],
      cliEnv({ AZURE_STORAGE_CONNECTION_STRING: undefined }),
    );
    expectOneLineError(run, /no Azure account configured/);
    expect(run.code).toBe(2);
  });
});
