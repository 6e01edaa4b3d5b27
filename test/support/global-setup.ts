import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { type RunningEmulators, startEmulators } from '../../src/local/emulators.ts';

/** What the tests get from the emulators started once for the whole run. */
export type EmulatorEnv = Omit<RunningEmulators, 'stop' | 'eventGridPending'>;

declare module 'vitest' {
  export interface ProvidedContext {
    emulators: EmulatorEnv;
  }
}

let running: RunningEmulators | undefined;

export async function setup(project: TestProject): Promise<void> {
  // The bundles (CLI, Lambda handlers, serverless.yml's variables) are built from the sources
  // under test once, before any test runs them.
  const build = promisify(execFile)(process.execPath, ['esbuild.config.mjs'], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
  });
  running = await startEmulators();
  await build;
  const { stop: _stop, eventGridPending: _pending, ...env } = running;
  project.provide('emulators', env);
}

export async function teardown(): Promise<void> {
  await running?.stop();
}
