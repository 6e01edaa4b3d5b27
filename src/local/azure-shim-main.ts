import { parseArgs } from 'node:util';
import { startAzureShim } from './azure-shim.ts';

// Child-process entry of the Azure shim. Options come from the command line (--port, --host,
// --target, --account) or, for the launcher, from S3AZ_PORT, S3AZ_HOST, S3AZ_TARGET and
// S3AZ_ACCOUNT. The account key comes only from S3AZ_ACCOUNT_KEY: a command line is visible
// to every user of the machine. Prints {"ready":true,"port":N} once listening.
try {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      target: { type: 'string' },
      account: { type: 'string' },
    },
    strict: true,
  });
  const port = Number(values.port ?? process.env.S3AZ_PORT ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`the port must be a number from 0 to 65535, got "${values.port}"`);
  }
  const target = values.target ?? process.env.S3AZ_TARGET;
  const key = process.env.S3AZ_ACCOUNT_KEY;
  if (!target) throw new Error("Azurite's endpoint is missing (--target or S3AZ_TARGET)");
  if (!key) throw new Error('the account key is missing (S3AZ_ACCOUNT_KEY)');
  const shim = await startAzureShim({
    target,
    account: values.account ?? process.env.S3AZ_ACCOUNT ?? 'devstoreaccount1',
    key,
    port,
    host: values.host ?? process.env.S3AZ_HOST ?? '127.0.0.1',
  });
  const stop = () => {
    shim.close().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // Only now: whoever reads this line may signal at once, and the handlers must be in place.
  process.stdout.write(`${JSON.stringify({ ready: true, port: shim.port })}\n`);
} catch (error) {
  // One line, which the launcher repeats when the start fails (a port in use, a bad option).
  process.stderr.write(`azure shim: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
