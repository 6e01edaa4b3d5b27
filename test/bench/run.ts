import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Result of one command run under GNU time. */
export interface TimedRun {
  /** Exit code, or `null` when a signal ended the command. */
  code: number | null;
  stdout: string;
  /** The command's own stderr, without GNU time's report. */
  stderr: string;
  /** Wall time from spawn to exit, process start-up included. */
  seconds: number;
  /** Peak resident set size (GNU time `%M`), in bytes. */
  maxRssBytes: number;
  /** CPU time in user mode (GNU time `%U`). */
  userSeconds: number;
  /** CPU time in the kernel (GNU time `%S`). */
  systemSeconds: number;
}

/** Where GNU time is expected; the shell builtin `time` cannot report peak memory. */
export const GNU_TIME = '/usr/bin/time';
const MARK = '@@bench-time';
const running = new Set<ChildProcess>();

/** Whether GNU time is installed at {@link GNU_TIME}. */
export function hasGnuTime(): boolean {
  return existsSync(GNU_TIME);
}

/** Throws, saying how to install it, when GNU time is missing (the modes that time copies). */
export function requireGnuTime(): void {
  if (!hasGnuTime()) {
    throw new Error(
      `GNU time is missing at ${GNU_TIME}: install it with "apt-get update && apt-get install -y time"`,
    );
  }
}

/**
 * Runs a command under GNU time, so that every tool's peak RSS and CPU time are measured the
 * same way (`wait4` rusage of the command and whatever it waited for), and times it from spawn
 * to exit. The command gets its own process group, so {@link stopRunningCommands} can end it
 * and its children together.
 */
export function runTimed(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<TimedRun> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(GNU_TIME, ['-f', `${MARK} %M %U %S`, command, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    running.add(child);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.once('error', (error) => {
      running.delete(child);
      reject(error);
    });
    child.once('close', (code) => {
      running.delete(child);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const errorText = Buffer.concat(stderr).toString();
      const mark = errorText.lastIndexOf(MARK);
      const [rssKb, user, system] =
        mark >= 0
          ? errorText
              .slice(mark + MARK.length)
              .trim()
              .split(/\s+/)
              .map(Number)
          : [];
      resolve({
        code,
        stdout: Buffer.concat(stdout).toString(),
        stderr: mark >= 0 ? errorText.slice(0, mark) : errorText,
        seconds,
        maxRssBytes: (rssKb ?? 0) * 1024,
        userSeconds: user ?? 0,
        systemSeconds: system ?? 0,
      });
    });
  });
}

/** Ends every command {@link runTimed} started that is still running (used on Ctrl-C). */
export function stopRunningCommands(): void {
  for (const child of running) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
}

/** The last few lines of a command's stderr, for an error message. */
export function tail(text: string, lines = 5): string {
  return text.trim().split('\n').slice(-lines).join(' | ');
}

/** Median of a list; `NaN` for an empty one. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}
