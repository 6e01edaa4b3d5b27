import { startAzureShim } from './azure-shim.ts';

// Child-process entry: S3AZ_TARGET, S3AZ_ACCOUNT, S3AZ_ACCOUNT_KEY, S3AZ_PORT, S3AZ_HOST.
const shim = await startAzureShim({
  target: process.env.S3AZ_TARGET ?? 'http://127.0.0.1:10001',
  account: process.env.S3AZ_ACCOUNT ?? 'devstoreaccount1',
  key: process.env.S3AZ_ACCOUNT_KEY ?? '',
  port: Number(process.env.S3AZ_PORT ?? 0),
  host: process.env.S3AZ_HOST ?? '127.0.0.1',
});
process.stdout.write(`${JSON.stringify({ ready: true, port: shim.port })}\n`);
const stop = () => {
  shim.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
