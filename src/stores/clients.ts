import { S3Client } from '@aws-sdk/client-s3';
import type {
  AwsCredentialIdentityProvider,
  BuildMiddleware,
  MetadataBearer,
} from '@aws-sdk/types';
import {
  AnonymousCredential,
  BlobServiceClient,
  type StoragePipelineOptions,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { UsageError } from '../errors.ts';
import { SDK_ATTEMPTS } from '../queue/timing.ts';
import { credentialsOf, type Environment } from './aws-settings.ts';

/**
 * The composition root for store clients: each client is built once from the environment,
 * following each ecosystem's own conventions, and reused.
 *
 * - S3: the AWS SDK's standard chain (`AWS_REGION`, `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`, …,
 *   `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`). A custom endpoint implies path-style URLs.
 * - Azure: `AZURE_STORAGE_CONNECTION_STRING`; or an account URL (`AZURE_STORAGE_ACCOUNT_URL`,
 *   or `AZURE_STORAGE_ACCOUNT` for `https://<account>.blob.core.windows.net`) with
 *   `AZURE_STORAGE_KEY`, `AZURE_STORAGE_SAS_TOKEN`, or else `DefaultAzureCredential`.
 *
 * Only the functions that use a store load this module (and the S3 and Azure SDKs with it);
 * what every function needs (SQS, AWS settings) is in aws-settings.ts, re-exported here.
 */
export { awsClientSettings, type Environment, makeSqsClient } from './aws-settings.ts';

const SILENT_LOGGER = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/**
 * Builds the S3 client from the standard AWS environment; a rule's region and role (assumed
 * credentials) override the environment's.
 */
export function makeS3Client(
  env: Environment = process.env,
  options: { region?: string; credentials?: AwsCredentialIdentityProvider } = {},
): S3Client {
  const endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const client = new S3Client({
    ...(endpoint !== undefined && endpoint !== '' && { endpoint, forcePathStyle: true }),
    region: options.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(options.credentials ? { credentials: options.credentials } : credentialsOf(env)),
    maxAttempts: SDK_ATTEMPTS,
    // Every body carries the checksum we computed (or a trailer we asked for); no second one.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // As the SDK's default logger, silent; but without it the SDK writes to the console each
    // time a streamed part fails ("non-retryable streaming request"), which the copy engine
    // retries and reports itself.
    logger: SILENT_LOGGER,
  });
  client.middlewareStack.add(unsignedPayload, { step: 'build', name: 's3azUnsignedPayload' });
  return client;
}

/**
 * Signs part and object bodies as UNSIGNED-PAYLOAD. Otherwise SigV4 hashes every body with
 * SHA-256 (a second pass over each part), although each one already carries a CRC32 that S3
 * verifies, and the SDK itself signs streamed bodies this way.
 */
const unsignedPayload: BuildMiddleware<object, MetadataBearer> = (next) => async (args) => {
  const request = args.request as { headers?: Record<string, string>; body?: unknown };
  if (request.headers && request.body instanceof Uint8Array) {
    request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  }
  return next(args);
};

export const pipelineOptions: StoragePipelineOptions = {
  retryOptions: { maxTries: SDK_ATTEMPTS },
};

export function parseConnectionString(text: string): Map<string, string> {
  const parts = new Map<string, string>();
  for (const piece of text.split(';')) {
    const index = piece.indexOf('=');
    if (index > 0) parts.set(piece.slice(0, index).trim().toLowerCase(), piece.slice(index + 1));
  }
  return parts;
}

/** The account URL named by the environment, or `undefined` when none is configured. */
export function defaultAccountUrl(env: Environment = process.env): string | undefined {
  const connection = env.AZURE_STORAGE_CONNECTION_STRING;
  if (connection) {
    const parts = parseConnectionString(connection);
    const endpoint = parts.get('blobendpoint');
    if (endpoint) return endpoint.replace(/\/+$/, '');
    const account = parts.get('accountname');
    const suffix = parts.get('endpointsuffix') ?? 'core.windows.net';
    const protocol = parts.get('defaultendpointsprotocol') ?? 'https';
    if (account) return `${protocol}://${account}.blob.${suffix}`;
    throw new UsageError('AZURE_STORAGE_CONNECTION_STRING names no AccountName or BlobEndpoint');
  }
  if (env.AZURE_STORAGE_ACCOUNT_URL) return env.AZURE_STORAGE_ACCOUNT_URL.replace(/\/+$/, '');
  if (env.AZURE_STORAGE_ACCOUNT)
    return `https://${env.AZURE_STORAGE_ACCOUNT}.blob.core.windows.net`;
  return undefined;
}

/**
 * Builds a BlobServiceClient for `accountUrl` (default: the environment's account) with the
 * environment's credential for that account.
 */
export async function makeBlobServiceClient(
  accountUrl: string | undefined,
  env: Environment = process.env,
): Promise<BlobServiceClient> {
  const configured = defaultAccountUrl(env);
  const url = accountUrl ?? configured;
  if (!url) {
    throw new UsageError(
      'no Azure account configured: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_ACCOUNT, or use an https://<account>.blob.core.windows.net/... URL',
    );
  }
  const sameAccount = configured !== undefined && sameUrl(configured, url);
  const connection = env.AZURE_STORAGE_CONNECTION_STRING;
  if (connection && sameAccount) {
    try {
      return BlobServiceClient.fromConnectionString(connection, pipelineOptions);
    } catch (error) {
      throw new UsageError('AZURE_STORAGE_CONNECTION_STRING is not a valid connection string', {
        cause: error,
      });
    }
  }
  const account = accountNameOf(url);
  if (env.AZURE_STORAGE_KEY && (sameAccount || env.AZURE_STORAGE_ACCOUNT === account)) {
    let credential: StorageSharedKeyCredential;
    try {
      credential = new StorageSharedKeyCredential(account, env.AZURE_STORAGE_KEY);
    } catch (error) {
      throw new UsageError('AZURE_STORAGE_KEY is not a valid account key', { cause: error });
    }
    return new BlobServiceClient(url, credential, pipelineOptions);
  }
  if (env.AZURE_STORAGE_SAS_TOKEN && (sameAccount || env.AZURE_STORAGE_ACCOUNT === account)) {
    return blobServiceWithSas(url, env.AZURE_STORAGE_SAS_TOKEN);
  }
  const { DefaultAzureCredential } = await import('@azure/identity');
  return new BlobServiceClient(url, new DefaultAzureCredential(), pipelineOptions);
}

/** A BlobServiceClient that signs nothing: the SAS token (with or without `?`) authorises. */
export function blobServiceWithSas(accountUrl: string, sas: string): BlobServiceClient {
  return new BlobServiceClient(
    `${accountUrl}?${sas.replace(/^\?/, '')}`,
    new AnonymousCredential(),
    pipelineOptions,
  );
}

function sameUrl(a: string, b: string): boolean {
  return a.replace(/\/+$/, '').toLowerCase() === b.replace(/\/+$/, '').toLowerCase();
}

/** Account name of an account URL: the first host label, or the first path segment for emulators. */
export function accountNameOf(accountUrl: string): string {
  const url = new URL(accountUrl);
  const segment = url.pathname.split('/').find((part) => part !== '');
  if (segment && isEmulatorHost(url.hostname)) return segment;
  return url.hostname.split('.')[0] ?? url.hostname;
}

/** Emulators (Azurite) put the account in the path: `http://127.0.0.1:10000/<account>`. */
export function isEmulatorHost(hostname: string): boolean {
  return hostname === 'localhost' || /^\d+\.\d+\.\d+\.\d+$/.test(hostname) || hostname === '[::1]';
}
