import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { describe, expect, it } from 'vitest';
import { type RunningEmulators, startEmulators } from '../../src/local/emulators.ts';

const LOCAL = new URL('../../src/local/', import.meta.url);

function portOf(url: string): number {
  return Number(new URL(url).port);
}

function isOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Resolves once `condition` holds, checking every 50 ms; rejects at the deadline. */
async function until(condition: () => Promise<boolean>, deadlineMs: number, what: string) {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > deadlineMs) throw new Error(`${what} within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function portsOf(
  emulators: Pick<RunningEmulators, 's3Endpoint' | 'azureAccountUrl' | 'azuriteAccountUrl'>,
) {
  return [
    portOf(emulators.s3Endpoint),
    portOf(emulators.azureAccountUrl),
    portOf(emulators.azuriteAccountUrl),
  ];
}

/** Resolves with the first stdout line of `child` that parses as JSON. */
function firstJsonLine<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.once('exit', (code) => reject(new Error(`exited with ${code} before printing`)));
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const line of buffered.split('\n')) {
        try {
          resolve(JSON.parse(line) as T);
          return;
        } catch {
          // not a whole JSON line yet
        }
      }
    });
  });
}

const closings = new WeakMap<ChildProcess, Promise<number | null>>();

/** Spawns a child and starts watching for its end at once, so no exit goes unseen. */
function watched(child: ChildProcess): ChildProcess {
  closings.set(child, new Promise((resolve) => child.once('close', (code) => resolve(code))));
  return child;
}

/** The exit code (null when a signal ended it), once the process has exited and closed its output. */
function exitCode(child: ChildProcess): Promise<number | null> {
  return closings.get(child) ?? Promise.reject(new Error('the child is not watched'));
}

function runTs(file: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  return watched(
    spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL(file, LOCAL)), ...args], {
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  );
}

describe('Function: startEmulators', () => {
  it('starts S3, Azurite and the shim on free ports, with fresh credentials, and stop() ends them all', async () => {
    // Act
    const first = await startEmulators();
    const second = await startEmulators();
    try {
      const s3 = new S3Client({
        endpoint: first.s3Endpoint,
        forcePathStyle: true,
        region: first.region,
        credentials: { accessKeyId: first.accessKeyId, secretAccessKey: first.secretAccessKey },
      });
      const buckets = await s3.send(new ListBucketsCommand({}));
      const containers = BlobServiceClient.fromConnectionString(first.azureConnectionString)
        .listContainers()
        .byPage();
      // Assess
      expect(buckets.Buckets).toEqual([]);
      expect((await containers.next()).done).toBe(false);
      expect(first.azureAccountUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1$/);
      expect(first.azureAccountKey).not.toBe(second.azureAccountKey);
      expect(first.secretAccessKey).not.toBe(second.secretAccessKey);
      expect(Buffer.from(first.azureAccountKey, 'base64')).toHaveLength(64);
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
    for (const port of [...portsOf(first), ...portsOf(second)]) {
      expect(await isOpen(port)).toBe(false);
    }
  });

  it('stops every emulator when the process that started it is killed', async () => {
    // Prepare: a parent process that starts the stack and prints its endpoints.
    const parent = watched(
      spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          '--input-type=module',
          '-e',
          `const { startEmulators } = await import(${JSON.stringify(new URL('emulators.ts', LOCAL).href)});
         const e = await startEmulators();
         console.log(JSON.stringify({ s3Endpoint: e.s3Endpoint, azureAccountUrl: e.azureAccountUrl, azuriteAccountUrl: e.azuriteAccountUrl }));`,
        ],
        {
          env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      ),
    );
    const endpoints = await firstJsonLine<{
      s3Endpoint: string;
      azureAccountUrl: string;
      azuriteAccountUrl: string;
    }>(parent);
    const ports = portsOf(endpoints);
    for (const port of ports) expect(await isOpen(port)).toBe(true);
    // Act
    parent.kill('SIGKILL');
    await exitCode(parent);
    // Assess
    await until(
      async () => (await Promise.all(ports.map(isOpen))).every((open) => !open),
      10_000,
      'the emulators did not exit after their parent',
    );
  });

  it('refuses an unknown option', async () => {
    await expect(startEmulators({ s3port: 1 } as never)).rejects.toThrow(/unknown option "s3port"/);
  });
});

describe('Entry points: s3-emulator-main and azure-shim-main', () => {
  it('print one ready line with the port and stop cleanly on SIGTERM', async () => {
    // Prepare
    const s3 = runTs('s3-emulator-main.ts', ['--port', '0']);
    const s3Ready = await firstJsonLine<{ ready: boolean; port: number }>(s3);
    const shim = runTs(
      'azure-shim-main.ts',
      ['--port', '0', '--target', `http://127.0.0.1:${s3Ready.port}`],
      {
        S3AZ_ACCOUNT_KEY: randomBytes(64).toString('base64'),
      },
    );
    const shimReady = await firstJsonLine<{ ready: boolean; port: number }>(shim);
    // Act
    s3.kill('SIGTERM');
    shim.kill('SIGTERM');
    // Assess
    expect(s3Ready.ready).toBe(true);
    expect(shimReady.ready).toBe(true);
    expect(await exitCode(s3)).toBe(0);
    expect(await exitCode(shim)).toBe(0);
    expect(await isOpen(s3Ready.port)).toBe(false);
    expect(await isOpen(shimReady.port)).toBe(false);
  });

  it('exits with one line on stderr when its port is taken', async () => {
    // Prepare
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const address = holder.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      const child = runTs('s3-emulator-main.ts', ['--port', String(port)]);
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      // Act
      const code = await exitCode(child);
      // Assess
      expect(code).toBe(1);
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toMatch(/^s3 emulator: .*EADDRINUSE/);
    } finally {
      holder.close();
    }
  });
});
