import { startS3Emulator } from './s3-emulator.ts';

// Child-process entry: S3AZ_PORT, S3AZ_HOST, S3AZ_REGION, S3AZ_ACCESS_KEY_ID from the launcher.
const emulator = await startS3Emulator({
  port: Number(process.env.S3AZ_PORT ?? 0),
  host: process.env.S3AZ_HOST ?? '127.0.0.1',
  ...(process.env.S3AZ_REGION && { region: process.env.S3AZ_REGION }),
  ...(process.env.S3AZ_ACCESS_KEY_ID && { accessKeyId: process.env.S3AZ_ACCESS_KEY_ID }),
});
process.stdout.write(`${JSON.stringify({ ready: true, port: emulator.port })}\n`);
const stop = () => {
  emulator.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
