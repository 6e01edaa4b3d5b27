/**
 * Runs a command's work with a signal that Ctrl-C (SIGINT) aborts. Work that fails once it was
 * interrupted ends with `s3az: interrupted; <afterwards>` and exit code 130, as shells expect;
 * work that stops by itself on the signal returns as usual.
 */
export async function untilInterrupted<T>(
  afterwards: string,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const interrupt = new AbortController();
  const onInterrupt = () => interrupt.abort(new Error('interrupted'));
  process.once('SIGINT', onInterrupt);
  try {
    return await work(interrupt.signal);
  } catch (error) {
    if (interrupt.signal.aborted) {
      process.stderr.write(`s3az: interrupted; ${afterwards}\n`);
      process.exit(130);
    }
    throw error;
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}
