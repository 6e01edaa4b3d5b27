import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';

/**
 * The benchmark's own access to the stores, straight on the SDKs and independent of `src/`, so
 * that creating sources, checking copies and measuring the emulators' limit do not depend on
 * the code under test.
 */

/** The environment variables that point the SDKs (and `s3az`) at the emulators. */
export interface StoreEnvironment {
  AWS_ENDPOINT_URL_S3: string;
  AWS_REGION: string;
  AWS_ACCESS_KEY_ID: string;
  AWS_SECRET_ACCESS_KEY: string;
  AZURE_STORAGE_CONNECTION_STRING: string;
}

/** Which store. */
export type Side = 's3' | 'azure';

/**
 * An S3 client for the emulator, configured as the copier's: no extra checksums, and bodies
 * signed `UNSIGNED-PAYLOAD`, so the client spends no CPU on SHA-256 of what it sends.
 */
export function makeBenchS3Client(env: StoreEnvironment): S3Client {
  const client = new S3Client({
    endpoint: env.AWS_ENDPOINT_URL_S3,
    forcePathStyle: true,
    region: env.AWS_REGION,
    credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request;
      if (
        typeof request === 'object' &&
        request !== null &&
        'headers' in request &&
        'body' in request &&
        request.body instanceof Uint8Array
      ) {
        (request.headers as Record<string, string>)['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      }
      return next(args);
    },
    { step: 'build', name: 'benchUnsignedPayload' },
  );
  return client;
}

/** A container client on the public Azure endpoint (the shim in front of Azurite). */
export function makeBenchContainerClient(
  env: StoreEnvironment,
  container: string,
): ContainerClient {
  return BlobServiceClient.fromConnectionString(
    env.AZURE_STORAGE_CONNECTION_STRING,
  ).getContainerClient(container);
}

/** Block ids of one blob must all have the same length. */
export function blockId(partNumber: number): string {
  return Buffer.from(`bench-${String(partNumber).padStart(6, '0')}`).toString('base64');
}

/** Runs `work` on every item with at most `concurrency` in flight. */
export async function inParallel<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < items.length; index = next++) {
      await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Object access on both stores, for sources and checks. */
export class BenchStores {
  readonly s3: S3Client;
  readonly azure: ContainerClient;
  /** The bucket and the container, which share one name. */
  readonly container: string;

  constructor(env: StoreEnvironment, container: string) {
    this.s3 = makeBenchS3Client(env);
    this.azure = makeBenchContainerClient(env, container);
    this.container = container;
  }

  /**
   * Writes `size` random bytes as `key` on both stores at once (S3 multipart upload and Azure
   * staged blocks, `partSize` each, a few in flight) and returns their SHA-256.
   */
  async createRandomObject(key: string, size: number, partSize: number): Promise<string> {
    const hash = createHash('sha256');
    const { UploadId } = await this.s3.send(
      new CreateMultipartUploadCommand({ Bucket: this.container, Key: key }),
    );
    const blob = this.azure.getBlockBlobClient(key);
    const parts: { PartNumber: number; ETag: string }[] = [];
    const blocks: string[] = [];
    const inFlight = new Set<Promise<void>>();
    for (let start = 0, partNumber = 1; start < size; start += partSize, partNumber++) {
      const body = randomBytes(Math.min(partSize, size - start));
      hash.update(body);
      const number = partNumber;
      blocks.push(blockId(number));
      const upload = Promise.all([
        this.s3
          .send(
            new UploadPartCommand({
              Bucket: this.container,
              Key: key,
              UploadId,
              PartNumber: number,
              Body: body,
              ContentLength: body.length,
            }),
          )
          .then(({ ETag }) => {
            parts.push({ PartNumber: number, ETag: ETag ?? '' });
          }),
        blob.stageBlock(blockId(number), body, body.length),
      ]).then(() => undefined);
      inFlight.add(upload);
      void upload.finally(() => inFlight.delete(upload)).catch(() => undefined);
      if (inFlight.size >= 4) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    await this.s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.container,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: parts.sort((a, b) => a.PartNumber - b.PartNumber) },
      }),
    );
    await blob.commitBlockList(blocks);
    return hash.digest('hex');
  }

  /** Size of an object, or `undefined` when it does not exist. */
  async size(side: Side, key: string): Promise<number | undefined> {
    try {
      if (side === 's3') {
        const head = await this.s3.send(
          new HeadObjectCommand({ Bucket: this.container, Key: key }),
        );
        return head.ContentLength;
      }
      return (await this.azure.getBlobClient(key).getProperties()).contentLength;
    } catch (error) {
      const status =
        (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ??
        (error as { statusCode?: number }).statusCode;
      if (status === 404) return undefined;
      throw error;
    }
  }

  /** SHA-256 of an object's content, read in one stream. */
  async sha256(side: Side, key: string): Promise<string> {
    const hash = createHash('sha256');
    const body =
      side === 's3'
        ? ((await this.s3.send(new GetObjectCommand({ Bucket: this.container, Key: key }))).Body as
            | Readable
            | undefined)
        : (await this.azure.getBlobClient(key).download()).readableStreamBody;
    if (!body) throw new Error(`${side}:${key}: no body`);
    for await (const chunk of body as AsyncIterable<Buffer>) hash.update(chunk);
    return hash.digest('hex');
  }

  /** Deletes an object; a missing one is fine. */
  async delete(side: Side, key: string): Promise<void> {
    if (side === 's3') {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.container, Key: key }));
    } else {
      await this.azure.getBlobClient(key).deleteIfExists();
    }
  }
}
