/**
 * The protocol every emulator child process speaks with the launcher: start the server,
 * install SIGTERM/SIGINT handlers that close it, and only then print
 * `{"ready":true,"port":N}` (whoever reads that line may signal at once). A failed start
 * prints one line on stderr, which the launcher repeats, and exits 1.
 */
export async function runChild(
  name: string,
  start: () => Promise<{ port: number; close(): Promise<void> }>,
): Promise<void> {
  try {
    const server = await start();
    const stop = () => {
      server.close().finally(() => process.exit(0));
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.stdout.write(`${JSON.stringify({ ready: true, port: server.port })}\n`);
  } catch (error) {
    process.stderr.write(`${name}: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}

/** The port from an option or the environment (0: any free port), or an error naming it. */
export function portOf(option: string | undefined): number {
  const port = Number(option ?? process.env.S3AZ_PORT ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`the port must be a number from 0 to 65535, got "${option}"`);
  }
  return port;
}
