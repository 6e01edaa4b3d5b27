import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { UsageError } from '../errors.ts';
import { type RunningEmulators, startEmulators } from '../local/emulators.ts';
import { makeS3Client } from '../stores/clients.ts';

export interface LocalCommandOptions {
  s3Port: string;
  azurePort: string;
  bucket: string;
  container: string;
  data?: string;
}

function port(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new UsageError(`${name} must be a port number (0-65535), got "${text}"`);
  }
  return value;
}

/**
 * `s3az local`: the local stack on the usual emulator ports, a bucket and a container ready,
 * endpoints and ready-to-paste examples printed, until Ctrl-C.
 */
export async function runLocalCommand(options: LocalCommandOptions): Promise<void> {
  const emulators = await startEmulators({
    s3Port: port(options.s3Port, '--s3-port'),
    azurePort: port(options.azurePort, '--azure-port'),
    ...(options.data !== undefined && { azuriteDataDir: options.data }),
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping the local stack...\n');
    await emulators.stop();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  try {
    await prepare(emulators, options);
  } catch (error) {
    await emulators.stop();
    throw error;
  }
  await new Promise<never>(() => undefined);
}

async function prepare(emulators: RunningEmulators, options: LocalCommandOptions): Promise<void> {
  const s3 = makeS3Client({
    AWS_ENDPOINT_URL_S3: emulators.s3Endpoint,
    AWS_REGION: emulators.region,
    AWS_ACCESS_KEY_ID: emulators.accessKeyId,
    AWS_SECRET_ACCESS_KEY: emulators.secretAccessKey,
  });
  await s3
    .send(new CreateBucketCommand({ Bucket: options.bucket }))
    .catch((error: { name?: string }) => {
      if (error.name !== 'BucketAlreadyOwnedByYou' && error.name !== 'BucketAlreadyExists')
        throw error;
    });
  await BlobServiceClient.fromConnectionString(emulators.azureConnectionString)
    .getContainerClient(options.container)
    .createIfNotExists();

  const lines = [
    'local stack ready',
    '',
    `  S3 + SQS    ${emulators.s3Endpoint}   bucket: ${options.bucket}   region: ${emulators.region}`,
    `  Azure Blob  ${emulators.azureAccountUrl}   container: ${options.container}`,
    '',
    'environment for s3az and the SDKs:',
    `  export AWS_ENDPOINT_URL_S3=${emulators.s3Endpoint} AWS_REGION=${emulators.region}`,
    `  export AWS_ACCESS_KEY_ID=${emulators.accessKeyId} AWS_SECRET_ACCESS_KEY=${emulators.secretAccessKey}`,
    `  export AZURE_STORAGE_CONNECTION_STRING='${emulators.azureConnectionString}'`,
    '',
    'try:',
    `  aws --endpoint-url ${emulators.s3Endpoint} s3 cp ./file s3://${options.bucket}/file`,
    `  npx s3az copy s3://${options.bucket}/file az://${options.container}/file`,
    `  az storage blob list --container-name ${options.container} --connection-string "$AZURE_STORAGE_CONNECTION_STRING"`,
    '',
    'Ctrl-C stops everything. (Local emulator credentials, generated for this run only.)',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
