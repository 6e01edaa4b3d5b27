import { execFile, spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.ts';

const BIN = new URL('../../src/cli/s3az.js', import.meta.url).pathname;
const ROOT = new URL('../..', import.meta.url).pathname;
/** A user's environment: nothing of the test runner's (which silences the SDK's warning). */
const USER_ENV = { PATH: process.env.PATH, HOME: process.env.HOME };

/** Resolves with everything printed once `pattern` has appeared, or rejects at the deadline. */
function waitForOutput(read: () => string, pattern: RegExp, deadlineMs: number): Promise<string> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      const text = read();
      if (pattern.test(text)) resolve(text);
      else if (Date.now() - started > deadlineMs)
        reject(new Error(`no ${pattern} within ${deadlineMs} ms:\n${text}`));
      else setTimeout(check, 50);
    };
    check();
  });
}

/** Starts `s3az local` on the given ports; resolves once it printed that it is ready. */
async function startLocal(s3Port: number, azurePort: number) {
  return startCommand(
    process.execPath,
    [
      BIN,
      'local',
      '--s3-port',
      String(s3Port),
      '--azure-port',
      String(azurePort),
      '--bucket',
      'local-test',
    ],
    /Ctrl-C stops everything/,
  );
}

/** Starts a command (stdin closed, output captured); resolves once `ready` was printed. */
async function startCommand(command: string, args: string[], ready: RegExp) {
  const child = spawn(command, args, {
    cwd: ROOT,
    env: USER_ENV,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const started = Date.now();
  const text = await waitForOutput(() => output, ready, 30_000).catch((error) => {
    child.kill('SIGKILL');
    throw error;
  });
  return { child, exited, text, read: () => output, startupMs: Date.now() - started };
}

/** Polls `check` until it is true, or fails at the deadline. */
async function waitFor(check: () => Promise<boolean>, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not true within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The JSON line `s3az local --json` prints once ready. */
interface ReadyLine {
  s3Endpoint: string;
  azureAccountUrl: string;
  webhookUrl: string;
  webhookSecret?: string;
}

function readyLineOf(text: string): ReadyLine {
  const line = text.split('\n').find((each) => each.startsWith('{"ready":true'));
  if (!line) throw new Error(`no ready line in:\n${text}`);
  return JSON.parse(line) as ReadyLine;
}

/** Whether nothing listens on the port any more (this process can bind it). */
async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The ports a ready line names: S3 + SQS, Azure Blob, the webhook. */
function portsOf(ready: ReadyLine): number[] {
  return [ready.s3Endpoint, ready.azureAccountUrl, ready.webhookUrl].map((url) =>
    Number(new URL(url).port),
  );
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(command, args, { env }, (error, stdout, stderr) => {
      resolve({
        code: error ? (typeof error.code === 'number' ? error.code : 1) : 0,
        stdout,
        stderr,
      });
    });
  });
}

async function onPath(command: string): Promise<boolean> {
  return (await run('sh', ['-c', `command -v ${command}`], USER_ENV)).code === 0;
}

describe('Command: s3az local', () => {
  it('prints working endpoints, mirrors a put in both directions, stops on Ctrl-C, and starts again', async () => {
    // Prepare
    const ports = [await freePort(), await freePort()] as const;
    const local = await startLocal(...ports);
    try {
      // Act
      const { text } = local;
      const s3Endpoint = /export AWS_ENDPOINT_URL=(\S+)/.exec(text)?.[1] ?? '';
      const accessKeyId = /AWS_ACCESS_KEY_ID=(\S+)/.exec(text)?.[1] ?? '';
      const secretAccessKey = /AWS_SECRET_ACCESS_KEY=(\S+)/.exec(text)?.[1] ?? '';
      const connection = /AZURE_STORAGE_CONNECTION_STRING='([^']+)'/.exec(text)?.[1] ?? '';
      const s3 = new S3Client({
        endpoint: s3Endpoint,
        forcePathStyle: true,
        region: 'us-east-1',
        credentials: { accessKeyId, secretAccessKey },
      });
      const container =
        BlobServiceClient.fromConnectionString(connection).getContainerClient('replicated');
      await s3.send(new PutObjectCommand({ Bucket: 'local-test', Key: 'hello.txt', Body: 'hi' }));
      await container.getBlockBlobClient('back.txt').upload('yo', 2);
      // Assess
      const blob = container.getBlockBlobClient('hello.txt');
      await waitFor(() => blob.exists(), 5_000);
      expect((await blob.downloadToBuffer()).toString()).toBe('hi');
      await waitFor(
        () =>
          s3
            .send(new GetObjectCommand({ Bucket: 'local-test', Key: 'back.txt' }))
            .then(() => true)
            .catch(() => false),
        5_000,
      );
      await waitForOutput(
        local.read,
        /copied +az:\/\/replicated\/back\.txt -> s3:\/\/local-test\/back\.txt/,
        5_000,
      );
      expect(local.read()).toMatch(
        /copied +s3:\/\/local-test\/hello\.txt -> az:\/\/replicated\/hello\.txt/,
      );
    } finally {
      local.child.kill('SIGINT');
    }
    expect(await local.exited).toBe(0);
    expect(local.read()).toContain('stopping the local mirror');
    // The same ports are free again: a second start works.
    const again = await startLocal(...ports);
    again.child.kill('SIGINT');
    expect(await again.exited).toBe(0);
  });

  it('refuses a bad port with one line', async () => {
    const child = spawn(process.execPath, [BIN, 'local', '--s3-port', 'abc'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(stderr.trim()).toBe('s3az: --s3-port must be a port number (0-65535), got "abc"');
  });
  it('prints the webhook secret with a curl line that works, AWS CLI lines for every CLI version, and no SDK warning', async () => {
    // Prepare
    const local = await startLocal(await freePort(), await freePort());
    try {
      const { text } = local;
      const s3Endpoint = /export AWS_ENDPOINT_URL=(\S+)/.exec(text)?.[1] ?? '';
      const accessKeyId = /AWS_ACCESS_KEY_ID=(\S+)/.exec(text)?.[1] ?? '';
      const secretAccessKey = /AWS_SECRET_ACCESS_KEY=(\S+)/.exec(text)?.[1] ?? '';
      // Assess: the secret, and a curl line that passes the webhook's authentication.
      const secret = /secret \(x-s3az-secret header\): (\S+)/.exec(text)?.[1];
      expect(secret).toMatch(/^[\w-]{16,}$/);
      const curl = text.split('\n').find((line) => line.trim().startsWith('curl '));
      expect(curl).toContain(`x-s3az-secret: ${secret}`);
      if (curl && (await onPath('curl'))) {
        const answer = await run('sh', ['-c', curl], USER_ENV);
        expect(answer.stdout).toBe('{"validationResponse":"hello"}');
      }
      // AWS CLIs before 2.13.0 / 1.29.0 ignore AWS_ENDPOINT_URL; the try lines name the endpoint.
      const awsLines = text.split('\n').filter((line) => line.trim().startsWith('aws '));
      expect(awsLines).toHaveLength(2);
      for (const line of awsLines) expect(line).toContain(`--endpoint-url ${s3Endpoint}`);
      expect(text).toMatch(/AWS_DEFAULT_REGION=us-east-1/);
      const ls = awsLines.find((line) => line.includes(' s3 ls '))?.split('#')[0];
      if (ls && (await onPath('aws'))) {
        // As an old CLI sees it: the keys and region, no endpoint variable, no user config.
        const home = await mkdtemp(join(tmpdir(), 's3az-aws-'));
        const listed = await run('sh', ['-c', ls], {
          ...USER_ENV,
          HOME: home,
          AWS_ACCESS_KEY_ID: accessKeyId,
          AWS_SECRET_ACCESS_KEY: secretAccessKey,
          AWS_DEFAULT_REGION: 'us-east-1',
        });
        expect(listed.stderr).toBe('');
        expect(listed.code).toBe(0);
      }
      // Node 20: the AWS SDK's NodeVersionSupportWarning would come first, on stderr.
      expect(text).not.toMatch(/NodeVersionSupportWarning|Warning:/);
      expect(text.startsWith('local mirror ready')).toBe(true);
    } finally {
      local.child.kill('SIGINT');
    }
    expect(await local.exited).toBe(0);
  });

  it('prints the webhook secret in the --json ready line, and stops on SIGTERM, freeing its ports', async () => {
    // Prepare
    const local = await startCommand(
      process.execPath,
      [BIN, 'local', '--json', '--s3-port', '0', '--azure-port', '0'],
      /"ready":true.*\n/,
    );
    const ready = readyLineOf(local.text);
    expect(ready.webhookSecret).toMatch(/^[\w-]{16,}$/);
    // Act: SIGTERM to the mirror alone (as `kill <pid>` sends it), not to its emulators.
    const started = Date.now();
    local.child.kill('SIGTERM');
    // Assess
    expect(await local.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(3_000);
    for (const port of portsOf(ready)) expect(await portFree(port)).toBe(true);
    expect(local.read()).not.toMatch(/s3az local:/);
  });

  it('stops when `kill <pid of npm start>` ends npm and its shell but not the mirror', async () => {
    // Prepare: npm runs the mirror under `sh -c`, and forwards SIGTERM to the shell only.
    const npm = await startCommand(
      'npm',
      ['start', '--', '--json', '--s3-port', '0', '--azure-port', '0'],
      /"ready":true.*\n/,
    );
    const ports = portsOf(readyLineOf(npm.text));
    // Act
    npm.child.kill('SIGTERM');
    await npm.exited;
    // Assess: the orphaned mirror sees its parent gone and stops everything.
    await waitFor(async () => {
      for (const port of ports) if (!(await portFree(port))) return false;
      return true;
    }, 5_000);
  });

  it('exits when its parent dies without passing anything on', async () => {
    // Prepare: a parent that starts the mirror and says its pid, then is killed outright.
    const parent = await startCommand(
      process.execPath,
      [
        '-e',
        "const c = require('node:child_process').spawn(process.execPath, process.argv.slice(1), { stdio: 'inherit' }); console.log(JSON.stringify({ mirrorPid: c.pid }));",
        BIN,
        'local',
        '--json',
        '--s3-port',
        '0',
        '--azure-port',
        '0',
      ],
      /"ready":true.*\n/,
    );
    const mirrorPid = Number(/"mirrorPid":(\d+)/.exec(parent.text)?.[1]);
    const ports = portsOf(readyLineOf(parent.text));
    try {
      // Act
      parent.child.kill('SIGKILL');
      await parent.exited;
      // Assess
      await waitFor(async () => !alive(mirrorPid), 5_000);
      for (const port of ports) expect(await portFree(port)).toBe(true);
    } finally {
      if (alive(mirrorPid)) process.kill(mirrorPid, 'SIGKILL');
    }
  });

  it('refuses a configuration that is not YAML with one line naming the place', async () => {
    const folder = await mkdtemp(join(tmpdir(), 's3az-config-'));
    const file = join(folder, 'bad.yaml');
    await writeFile(file, 'rules:\n  - name: x\n   bad: [\n');
    const result = await run(process.execPath, [BIN, 'local', '--config', file], USER_ENV);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^s3az: \S+bad\.yaml is not valid YAML: [^\n]* at line 3, column 1\n$/,
    );
  });
});
