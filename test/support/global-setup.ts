import type { TestProject } from 'vitest/node';
import { type RunningEmulators, startEmulators } from '../../src/local/emulators.ts';

/** What the tests get from the emulators started once for the whole run. */
export type EmulatorEnv = Omit<RunningEmulators, 'stop'>;

declare module 'vitest' {
  export interface ProvidedContext {
    emulators: EmulatorEnv;
  }
}

let running: RunningEmulators | undefined;

export async function setup(project: TestProject): Promise<void> {
  running = await startEmulators();
  const { stop: _stop, ...env } = running;
  project.provide('emulators', env);
}

export async function teardown(): Promise<void> {
  await running?.stop();
}
