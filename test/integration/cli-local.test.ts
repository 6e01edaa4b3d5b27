import { spawn } from 'node:child_process';
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

describe('Command: s3az local', () => {
  it('starts the stack, prints working endpoints and credentials, and stops cleanly on Ctrl-C', async () => {
    // Prepare
    const child = spawn(
      process.execPath,
      [BIN, 'local', '--s3-port', '0', '--azure-port', '0', '--bucket', 'local-test'],
      {
        env: { PATH: process.env.PATH, HOME: process.env.HOME },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      // Act
      const text = await waitForOutput(() => output, /Ctrl-C stops everything/, 30_000);
      const s3Endpoint = /export AWS_ENDPOINT_URL_S3=(\S+)/.exec(text)?.[1] ?? '';
      const accessKeyId = /AWS_ACCESS_KEY_ID=(\S+)/.exec(text)?.[1] ?? '';
      const secretAccessKey = /AWS_SECRET_ACCESS_KEY=(\S+)/.exec(text)?.[1] ?? '';
      const connection = /AZURE_STORAGE_CONNECTION_STRING='([^']+)'/.exec(text)?.[1] ?? '';
      const s3 = new S3Client({
        endpoint: s3Endpoint,
        forcePathStyle: true,
        region: 'us-east-1',
        credentials: { accessKeyId, secretAccessKey },
      });
      await s3.send(new PutObjectCommand({ Bucket: 'local-test', Key: 'hello.txt', Body: 'hi' }));
      const got = await s3.send(new GetObjectCommand({ Bucket: 'local-test', Key: 'hello.txt' }));
      const container =
        BlobServiceClient.fromConnectionString(connection).getContainerClient('replicated');
      // Assess
      expect(await got.Body?.transformToString()).toBe('hi');
      expect(await container.exists()).toBe(true);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(output).toContain('stopping the local stack');
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
