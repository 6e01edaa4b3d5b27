import { spawn } from 'node:child_process';

/** Result of one timed command. */
export interface TimedRun {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  seconds: number;
  /** Peak resident set size reported by GNU time, in bytes. */
  maxRssBytes: number;
}

const RSS_MARK = '@@maxrss_kb=';

/**
 * Runs a command under GNU time (`/usr/bin/time -f %M`) so every tool's peak RSS is measured
 * the same way, and times it from spawn to exit.
 */
export function runTimed(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<TimedRun> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', `${RSS_MARK}%M`, command, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const mark = stderr.lastIndexOf(RSS_MARK);
      const maxRssKb = mark >= 0 ? Number.parseInt(stderr.slice(mark + RSS_MARK.length), 10) : 0;
      resolve({
        code: code ?? 1,
        stdout,
        stderr: mark >= 0 ? stderr.slice(0, mark) : stderr,
        seconds,
        maxRssBytes: maxRssKb * 1024,
      });
    });
  });
}

/** Median of a non-empty list. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? 0)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}
