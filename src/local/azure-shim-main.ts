import { parseArgs } from 'node:util';
import { startAzureShim } from './azure-shim.ts';
import { portOf, runChild } from './child-entry.ts';

// Child-process entry of the Azure shim. Options come from the command line (--port, --host,
// --target, --account) or, for the launcher, from S3AZ_PORT, S3AZ_HOST, S3AZ_TARGET and
// S3AZ_ACCOUNT. The account key comes only from S3AZ_ACCOUNT_KEY: a command line is visible
// to every user of the machine. Prints {"ready":true,"port":N} once listening.
await runChild('azure shim', async () => {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      target: { type: 'string' },
      account: { type: 'string' },
    },
    strict: true,
  });
  const port = portOf(values.port);
  const target = values.target ?? process.env.S3AZ_TARGET;
  const key = process.env.S3AZ_ACCOUNT_KEY;
  if (!target) throw new Error("Azurite's endpoint is missing (--target or S3AZ_TARGET)");
  if (!key) throw new Error('the account key is missing (S3AZ_ACCOUNT_KEY)');
  return startAzureShim({
    target,
    account: values.account ?? process.env.S3AZ_ACCOUNT ?? 'devstoreaccount1',
    key,
    port,
    host: values.host ?? process.env.S3AZ_HOST ?? '127.0.0.1',
    ...(process.env.S3AZ_EVENT_GRID_URL && {
      eventGrid: {
        url: process.env.S3AZ_EVENT_GRID_URL,
        ...(process.env.S3AZ_EVENT_GRID_SECRET && { secret: process.env.S3AZ_EVENT_GRID_SECRET }),
        ...(process.env.S3AZ_EVENT_GRID_CONTAINERS && {
          containers: process.env.S3AZ_EVENT_GRID_CONTAINERS.split(','),
        }),
        ...(process.env.S3AZ_EVENT_GRID_SKIP_CLIENT_REQUEST_ID_PREFIX && {
          skipClientRequestIdPrefix: process.env.S3AZ_EVENT_GRID_SKIP_CLIENT_REQUEST_ID_PREFIX,
        }),
        ...(process.env.S3AZ_EVENT_GRID_RETRY_SCALE && {
          retryScale: Number(process.env.S3AZ_EVENT_GRID_RETRY_SCALE),
        }),
      },
    }),
  });
});
