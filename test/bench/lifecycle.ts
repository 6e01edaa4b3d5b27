import { stopRunningCommands } from './run.ts';

/** A benchmark mode: its arguments (without the mode's name), and where to register clean-up. */
export type BenchMode = (args: readonly string[], cleanup: Cleanup) => Promise<void>;

/** Clean-up steps, run once, newest first, on success, failure, Ctrl-C or SIGTERM. */
export class Cleanup {
  readonly #steps: Array<() => unknown> = [];
  readonly #syncSteps: Array<() => void> = [];
  #ran: Promise<void> | undefined;

  /** Registers a step (stop the emulators); its failure is ignored. */
  add(step: () => unknown): void {
    this.#steps.push(step);
  }

  /**
   * Registers a synchronous step (remove a temporary folder), which also runs when the process
   * exits without the asynchronous clean-up having finished.
   */
  addSync(step: () => void): void {
    this.#syncSteps.push(step);
    this.#steps.push(step);
  }

  /** Runs every step once; later calls wait for the first. */
  run(): Promise<void> {
    this.#ran ??= (async () => {
      for (const step of [...this.#steps].reverse()) {
        try {
          await step();
        } catch {
          // keep cleaning up
        }
      }
    })();
    return this.#ran;
  }

  /** Runs the synchronous steps; for the process's `exit` event. */
  runSync(): void {
    for (const step of [...this.#syncSteps].reverse()) {
      try {
        step();
      } catch {
        // keep cleaning up
      }
    }
  }
}

/**
 * Runs a benchmark mode with a {@link Cleanup} that always runs: when the mode ends, when it
 * throws, and on SIGINT or SIGTERM (after ending the command being measured). Exits the
 * process with the conventional code.
 */
export async function runWithCleanup(mode: (cleanup: Cleanup) => Promise<void>): Promise<never> {
  const cleanup = new Cleanup();
  let interrupted: NodeJS.Signals | undefined;
  // Handlers stay installed: a second Ctrl-C (or tsx relaying the first) must not end the
  // process halfway through stopping the emulators.
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = signal;
    process.stderr.write(`\nbench: ${signal}, stopping the emulators and removing temp files\n`);
    stopRunningCommands();
    void cleanup.run().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => cleanup.runSync());
  try {
    await mode(cleanup);
    await cleanup.run();
    process.exit(0);
  } catch (error) {
    // After a signal, the mode fails because its command was stopped; that is not news.
    if (!interrupted) {
      process.stderr.write(`bench: ${describeError(error)}\n`);
    }
    await cleanup.run();
    process.exit(interrupted ? 130 : 1);
  }
}

/**
 * An error in one line, with what an empty message leaves out: its name, the HTTP status an
 * SDK error carries, its cause, and where it was thrown.
 */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const cause = error.cause instanceof Error ? `; cause: ${describeError(error.cause)}` : '';
  const where = (error.stack ?? '')
    .split('\n')
    .slice(1, 4)
    .map((line) => line.trim())
    .join(' < ');
  return `${error.name}${status ? ` (HTTP ${status})` : ''}: ${error.message || '(no message)'}${cause} [${where}]`;
}
