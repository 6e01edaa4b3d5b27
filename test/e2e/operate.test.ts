import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.ts';

const BIN = new URL('../../src/cli/s3az.js', import.meta.url).pathname;
const ROOT = new URL('../..', import.meta.url).pathname;
const USER_ENV = { PATH: process.env.PATH, HOME: process.env.HOME };

/** Runs `s3az <args>` as a user would from another terminal. */
async function s3az(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [BIN, ...args], { cwd: ROOT, env: USER_ENV })
    .then(({ stdout, stderr }) => ({ code: 0, stdout, stderr }))
    .catch((error: { code?: number; stdout?: string; stderr?: string }) => ({
      code: error.code ?? 1,
      stdout: error.stdout ?? '',
      stderr: error.stderr ?? '',
    }));
}

/** Polls `check` until it holds, or fails with what it saw last. */
async function until<T>(
  check: () => Promise<T | undefined>,
  what: string,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const sha = (body: Buffer) => createHash('sha256').update(body).digest('hex');

let mirror: ReturnType<typeof spawn>;
let output = '';
let ready: {
  s3Endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  azureConnectionString: string;
  queues: Record<string, string>;
};
let port: number;

beforeAll(async () => {
  port = await freePort();
  const azurePort = await freePort();
  mirror = spawn(
    process.execPath,
    [
      BIN,
      'local',
      '--json',
      '--s3-port',
      String(port),
      '--azure-port',
      String(azurePort),
      '--bucket',
      'ops-bucket',
      '--container',
      'ops-container',
    ],
    { cwd: ROOT, env: USER_ENV, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  mirror.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  mirror.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const line = await until(
    async () => output.split('\n').find((each) => each.startsWith('{"ready":true')),
    'the mirror to be ready',
  );
  ready = JSON.parse(line);
}, 60_000);

afterAll(async () => {
  mirror.kill('SIGTERM');
  await new Promise((resolve) => mirror.once('exit', resolve));
});

describe('CLI: s3az dlq and s3az redrive on the local mirror', () => {
  it('lists the dead letters of a missing container and re-drives them once it exists', async () => {
    // Prepare: copies fail because the rule's container does not exist.
    const { queues } = ready;
    expect(Object.keys(queues).sort()).toEqual([
      'events',
      'eventsDeadLetter',
      'tasks',
      'tasksDeadLetter',
    ]);
    const container = BlobServiceClient.fromConnectionString(
      ready.azureConnectionString,
    ).getContainerClient('ops-container');
    await container.delete();
    const s3 = new S3Client({
      endpoint: ready.s3Endpoint,
      forcePathStyle: true,
      region: ready.region,
      credentials: { accessKeyId: ready.accessKeyId, secretAccessKey: ready.secretAccessKey },
    });
    const bodies = new Map<string, Buffer>();
    for (let i = 0; i < 20; i++) {
      const key = `in/file-${i}.bin`;
      const body = randomBytes(1000 + i);
      bodies.set(key, body);
      await s3.send(new PutObjectCommand({ Bucket: 'ops-bucket', Key: key, Body: body }));
    }
    // Act 1: the dead letters, seen from another terminal.
    const listed = await until(async () => {
      const { stdout } = await s3az(['dlq', 'list', '--local', String(port), '--json']);
      const report = JSON.parse(stdout) as {
        total: number;
        groups: Array<{ reason: string; error: string; count: number }>;
      };
      return report.total === 20 ? report : undefined;
    }, '20 dead letters');
    const text = await s3az(['dlq', 'list', '--local', String(port)]);
    // Act 2: the container exists again; re-drive.
    await container.create();
    const moved = await s3az(['redrive', '--local', String(port), '--json']);
    // Assess
    expect(listed.groups).toEqual([
      expect.objectContaining({
        reason: 'not-found',
        error: 'az://ops-container/…: container does not exist',
        count: 20,
      }),
    ]);
    expect(text.stdout).toContain('tasks dead-letter queue: 20');
    expect(JSON.parse(moved.stdout)).toMatchObject({ moved: 20, failed: 0 });
    await until(async () => {
      const copied = output.split('\n').filter((line) => line.includes('"action":"copied"'));
      return copied.length >= 20 ? copied : undefined;
    }, '20 copies');
    for (const [key, body] of bodies) {
      expect(sha(await container.getBlockBlobClient(key).downloadToBuffer())).toBe(sha(body));
    }
    const copiedKeys = output
      .split('\n')
      .filter((line) => line.includes('"action":"copied"'))
      .map((line) => (JSON.parse(line) as { from: string }).from);
    expect(copiedKeys).toHaveLength(20);
    expect(new Set(copiedKeys).size).toBe(20);
    const after = JSON.parse(
      (await s3az(['dlq', 'list', '--local', String(port), '--json'])).stdout,
    );
    expect(after.total).toBe(0);
    const status = JSON.parse((await s3az(['status', '--local', String(port), '--json'])).stdout);
    expect(status.deadLetters.total).toBe(0);
    expect(status.rules[0]).toMatchObject({ rule: 'local', lastAction: 'copied' });
  });

  it('answers every operations command with --help, and one line and a non-zero exit on a wrong target', async () => {
    for (const command of [
      ['dlq', 'list'],
      ['dlq', 'show'],
      ['redrive'],
      ['status'],
      ['setup', 's3'],
    ]) {
      const help = await s3az([...command, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain('--local');
      expect(help.stdout).toContain('--json');
    }
    const missing = await s3az(['dlq', 'list', '--local', '1']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(
      `s3az: no local mirror runs on port 1 (no ${tmpdir()}/s3az-local-1.json); start one with "npx s3az local" in another terminal\n`,
    );
    const badFilter = await s3az(['redrive', '--local', String(port), '--queue', 'nope']);
    expect(badFilter).toMatchObject({
      code: 2,
      stderr: 's3az: --queue: "nope" is not "events" or "tasks"\n',
    });
    const setup = await s3az(['setup', 's3', '--local', String(port), '--json']);
    // The mirror set its bucket up as `setup s3` would: a second run changes nothing.
    expect(JSON.parse(setup.stdout).buckets).toEqual([
      expect.objectContaining({ bucket: 'ops-bucket', changes: false }),
    ]);
    const unknown = await s3az(['dlq', 'show', 'no-such-id', '--local', String(port)]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^s3az: no dead letter with id no-such-id in the local mirror/);
  });
});
