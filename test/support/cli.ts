import { execFile } from 'node:child_process';
import { expect } from 'vitest';

const BIN = new URL('../../src/cli/s3az.js', import.meta.url).pathname;

/** What a run of `s3az` printed, and its exit code. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `s3az <args>` as a user would, with no AWS access unless `env` gives it (the AWS
 * endpoint is a closed port): a command that needs none must not try.
 */
export function s3azOffline(
  args: string[],
  env: Record<string, string> = {},
  cwd?: string,
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      {
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '',
          AWS_ACCESS_KEY_ID: 'test',
          AWS_SECRET_ACCESS_KEY: 'test',
          AWS_REGION: 'eu-west-1',
          AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
          ...env,
        },
        ...(cwd !== undefined && { cwd }),
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A usage error as every command gives it: one `s3az:` line on stderr, exit code 2. */
export function expectOneLineError(run: Run, pattern: RegExp): void {
  expect(run.code).toBe(2);
  expect(run.stdout).toBe('');
  expect(run.stderr).toMatch(/^s3az: [^\n]+\n$/);
  expect(run.stderr).toMatch(pattern);
}
