import { parseArgs } from 'node:util';
import { portOf, runChild } from './child-entry.ts';
import { startS3Emulator } from './s3-emulator.ts';

// Child-process entry of the S3 (+ SQS) emulator. Options come from the command line
// (--port, --host, --region, --access-key-id) or, for the launcher, from S3AZ_PORT, S3AZ_HOST,
// S3AZ_REGION and S3AZ_ACCESS_KEY_ID. The access key id may be a comma-separated list of keys
// that are all accepted. Prints {"ready":true,"port":N} once listening.
await runChild('s3 emulator', async () => {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      region: { type: 'string' },
      'access-key-id': { type: 'string' },
    },
    strict: true,
  });
  const port = portOf(values.port);
  const region = values.region ?? process.env.S3AZ_REGION;
  const accessKeyIds = (values['access-key-id'] ?? process.env.S3AZ_ACCESS_KEY_ID ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key !== '');
  return startS3Emulator({
    port,
    host: values.host ?? process.env.S3AZ_HOST ?? '127.0.0.1',
    ...(region && { region }),
    ...(accessKeyIds.length > 0 && { accessKeyId: accessKeyIds }),
  });
});
