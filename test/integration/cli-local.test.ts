import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { describe, expect, it } from 'vitest';

const BIN = new URL('../../src/cli/s3az.js', import.meta.url).pathname;

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

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts `s3az local` on the given ports; resolves once it printed that it is ready. */
async function startLocal(s3Port: number, azurePort: number) {
  const child = spawn(
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
    { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const started = Date.now();
  const text = await waitForOutput(() => output, /Ctrl-C stops everything/, 30_000).catch(
    (error) => {
      child.kill('SIGKILL');
      throw error;
    },
  );
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
});
