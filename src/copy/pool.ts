import { setMaxListeners } from 'node:events';

/**
 * Runs `worker` over `items` with at most `concurrency` in flight. The first failure stops
 * new work, aborts the signal handed to the workers in flight, and is rethrown once they end.
 * `signal` stops new work too; it aborts the workers in flight as well, unless
 * `finishInFlight`, when they run to their end first (a time budget's stop, with a margin for
 * them). Either way its reason is thrown after.
 */
export async function runPool<T>(
  items: readonly T[],
  concurrency: number,
  worker: (item: T, signal: AbortSignal) => Promise<void>,
  signal?: AbortSignal,
  options: { finishInFlight?: boolean } = {},
): Promise<void> {
  const controller = new AbortController();
  // Every request in flight listens on this signal; more than Node's default of 10 is expected.
  setMaxListeners(Math.max(10, concurrency * 4), controller.signal);
  const onAbort = () => {
    if (!options.finishInFlight) controller.abort(signal?.reason);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let next = 0;
  let failure: { error: unknown } | undefined;

  const lane = async () => {
    while (failure === undefined && !controller.signal.aborted && !signal?.aborted) {
      const index = next++;
      if (index >= items.length) return;
      try {
        await worker(items[index] as T, controller.signal);
      } catch (error) {
        failure ??= { error };
        controller.abort(error);
      }
    }
  };

  try {
    await Promise.all(
      Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, lane),
    );
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (failure !== undefined) throw failure.error;
  signal?.throwIfAborted();
}
