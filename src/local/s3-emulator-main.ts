import { parseArgs } from 'node:util';
import { startS3Emulator } from './s3-emulator.ts';

// Child-process entry of the S3 (+ SQS) emulator. Options come from the command line
// (--port, --host, --region, --access-key-id) or, for the launcher, from S3AZ_PORT, S3AZ_HOST,
// S3AZ_REGION and S3AZ_ACCESS_KEY_ID. Prints {"ready":true,"port":N} once listening.
try {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      region: { type: 'string' },
      'access-key-id': { type: 'string' },
    },
    strict: true,
  });
  const port = Number(values.port ?? process.env.S3AZ_PORT ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`the port must be a number from 0 to 65535, got "${values.port}"`);
  }
  const region = values.region ?? process.env.S3AZ_REGION;
  const accessKeyId = values['access-key-id'] ?? process.env.S3AZ_ACCESS_KEY_ID;
  const emulator = await startS3Emulator({
    port,
    host: values.host ?? process.env.S3AZ_HOST ?? '127.0.0.1',
    ...(region && { region }),
    ...(accessKeyId && { accessKeyId }),
  });
  const stop = () => {
    emulator.close().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // Only now: whoever reads this line may signal at once, and the handlers must be in place.
  process.stdout.write(`${JSON.stringify({ ready: true, port: emulator.port })}\n`);
} catch (error) {
  // One line, which the launcher repeats when the start fails (a port in use, a bad option).
  process.stderr.write(`s3 emulator: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
