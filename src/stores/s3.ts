import type { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
  type UploadPartCommandOutput,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { S3_LIMITS } from '../core/range-plan.ts';
import {
  NotFoundError,
  PermanentError,
  PreconditionFailedError,
  RetryableError,
} from '../errors.ts';
import { awsChunkedWithCrc32, CRC32_TRAILER } from './aws-chunked.ts';
import type {
  CallOptions,
  CommitOptions,
  GetOptions,
  ListOptions,
  ListPage,
  ObjectBody,
  ObjectHead,
  ObjectProperties,
  ObjectStore,
  Presigner,
  PutOptions,
  PutResult,
  SmallObject,
  SmallReads,
  StagedPart,
  StagedUpload,
  StagePartOptions,
  WriteCondition,
  WriteOptions,
} from './object-store.ts';
import { smallObjectOf } from './read-exactly.ts';
import { classifyS3Error, s3ErrorCode } from './s3-errors.ts';

/** CRC32 of a body as S3 wants it: base64 of the big-endian value. */
function crc32Of(body: Buffer): string {
  const value = Buffer.alloc(4);
  value.writeUInt32BE(crc32(body));
  return value.toString('base64');
}

/**
 * S3 answers a write with `If-Match` on a key that is gone with 404 NoSuchKey, not 412; for
 * the caller it is the same news (the destination is not what the decision saw), so it gets
 * the same error and decides again.
 */
function conditionalWriteError(error: unknown, what: string, condition: WriteCondition) {
  const classified = classifyS3Error(error, what);
  const code =
    (error as { name?: string; Code?: string }).Code ?? (error as { name?: string }).name;
  if (condition.kind === 'match' && code === 'NoSuchKey') {
    return new PreconditionFailedError(`${what}: precondition failed (the object is gone)`, {
      cause: error,
    });
  }
  return classified;
}

function abortOf(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal ? { abortSignal: signal } : {};
}

function conditionHeaders(condition: WriteCondition): { IfMatch?: string; IfNoneMatch?: string } {
  if (condition.kind === 'absent') return { IfNoneMatch: '*' };
  if (condition.kind === 'match') return { IfMatch: condition.etag };
  return {};
}

function propertyParams(properties: ObjectProperties) {
  return {
    ...(properties.contentType !== undefined && { ContentType: properties.contentType }),
    ...(properties.contentEncoding !== undefined && {
      ContentEncoding: properties.contentEncoding,
    }),
    ...(properties.contentLanguage !== undefined && {
      ContentLanguage: properties.contentLanguage,
    }),
    ...(properties.contentDisposition !== undefined && {
      ContentDisposition: properties.contentDisposition,
    }),
    ...(properties.cacheControl !== undefined && { CacheControl: properties.cacheControl }),
  };
}

function definedProperties(source: {
  ContentType?: string | undefined;
  ContentEncoding?: string | undefined;
  ContentLanguage?: string | undefined;
  ContentDisposition?: string | undefined;
  CacheControl?: string | undefined;
}): ObjectProperties {
  const properties: ObjectProperties = {};
  if (source.ContentType) properties.contentType = source.ContentType;
  if (source.ContentEncoding) properties.contentEncoding = source.ContentEncoding;
  if (source.ContentLanguage) properties.contentLanguage = source.ContentLanguage;
  if (source.ContentDisposition) properties.contentDisposition = source.ContentDisposition;
  if (source.CacheControl) properties.cacheControl = source.CacheControl;
  return properties;
}

/**
 * The content MD5 an S3 ETag stands for, when it stands for one. S3: objects written by
 * PutObject, POST or CopyObject, unencrypted or under SSE-S3, have an ETag that is the MD5 of
 * their data; under SSE-KMS or SSE-C, or from a multipart upload (`…-N`), it is not.
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html
 */
function md5OfEtag(out: {
  ETag?: string | undefined;
  ServerSideEncryption?: string | undefined;
  SSECustomerAlgorithm?: string | undefined;
}): { contentMd5?: string } {
  const hex = /^"?([0-9a-f]{32})"?$/.exec(out.ETag ?? '')?.[1];
  if (hex === undefined || out.SSECustomerAlgorithm !== undefined) return {};
  if (out.ServerSideEncryption !== undefined && out.ServerSideEncryption !== 'AES256') return {};
  return { contentMd5: Buffer.from(hex, 'hex').toString('base64') };
}

/** What HeadObject and a whole GetObject say of an object, alike. */
function headOf(key: string, out: HeadObjectCommandOutput | GetObjectCommandOutput): ObjectHead {
  return {
    key,
    size: out.ContentLength ?? 0,
    etag: out.ETag ?? '',
    lastModified: out.LastModified ?? new Date(0),
    ...(out.VersionId !== undefined && out.VersionId !== 'null' && { versionId: out.VersionId }),
    ...md5OfEtag(out),
    properties: definedProperties(out),
    metadata: { ...(out.Metadata ?? {}) },
  };
}

/** `ObjectStore` over one S3 bucket. The client is built by the caller (composition root). */
export class S3ObjectStore implements ObjectStore, Presigner, SmallReads {
  readonly side = 's3' as const;
  readonly limits = S3_LIMITS;
  readonly container: string;
  readonly #client: S3Client;
  readonly #encryption: { ServerSideEncryption?: 'aws:kms'; SSEKMSKeyId?: string };

  /** With `kmsKeyId`, every object this store writes is encrypted with SSE-KMS under that key. */
  constructor(client: S3Client, bucket: string, options: { kmsKeyId?: string } = {}) {
    this.#client = client;
    this.container = bucket;
    this.#encryption = options.kmsKeyId
      ? { ServerSideEncryption: 'aws:kms', SSEKMSKeyId: options.kmsKeyId }
      : {};
  }

  describe(key: string): string {
    return `s3://${this.container}/${key}`;
  }

  async checkContainer(options: CallOptions = {}): Promise<void> {
    try {
      await this.#client.send(
        new HeadBucketCommand({ Bucket: this.container }),
        abortOf(options.signal),
      );
    } catch (error) {
      const classified = classifyS3Error(error, `s3://${this.container}`);
      if (classified instanceof NotFoundError) {
        throw new NotFoundError(`s3://${this.container}: bucket does not exist`, { cause: error });
      }
      throw classified;
    }
  }

  async head(key: string, options: CallOptions = {}): Promise<ObjectHead | undefined> {
    try {
      const out = await this.#client.send(
        new HeadObjectCommand({ Bucket: this.container, Key: key }),
        abortOf(options.signal),
      );
      return headOf(key, out);
    } catch (error) {
      const classified = classifyS3Error(error, this.describe(key));
      // HEAD has no body, so a missing bucket also reads as 404 here; checkContainer tells them apart.
      if (classified instanceof NotFoundError) return undefined;
      throw classified;
    }
  }

  async getSmall(
    key: string,
    maxBytes: number,
    options: CallOptions = {},
  ): Promise<SmallObject | undefined> {
    let out: GetObjectCommandOutput;
    try {
      out = await this.#client.send(
        new GetObjectCommand({ Bucket: this.container, Key: key }),
        abortOf(options.signal),
      );
    } catch (error) {
      const classified = classifyS3Error(error, this.describe(key));
      // A GET has a body: a missing bucket says NoSuchBucket, and is thrown.
      if (classified instanceof NotFoundError && s3ErrorCode(error) === 'NoSuchKey') {
        return undefined;
      }
      throw classified;
    }
    return smallObjectOf(
      headOf(key, out),
      out.Body as Readable | undefined,
      maxBytes,
      this.describe(key),
    );
  }

  async get(key: string, options: GetOptions = {}): Promise<ObjectBody> {
    try {
      const out = await this.#client.send(
        new GetObjectCommand({
          Bucket: this.container,
          Key: key,
          ...(options.range && { Range: `bytes=${options.range.start}-${options.range.end}` }),
          ...(options.ifMatch !== undefined && { IfMatch: options.ifMatch }),
        }),
        abortOf(options.signal),
      );
      if (!out.Body) throw new PermanentError(`${this.describe(key)}: GetObject returned no body`);
      return {
        body: out.Body as Readable,
        contentLength: out.ContentLength ?? 0,
        etag: out.ETag ?? '',
      };
    } catch (error) {
      throw classifyS3Error(error, this.describe(key));
    }
  }

  async put(key: string, body: Buffer, options: PutOptions): Promise<PutResult> {
    try {
      const out = await this.#client.send(
        new PutObjectCommand({
          Bucket: this.container,
          Key: key,
          Body: body,
          ContentLength: body.length,
          // S3 verifies the checksum before it stores anything.
          ...(options.md5
            ? { ContentMD5: options.md5.toString('base64') }
            : { ChecksumCRC32: crc32Of(body) }),
          ...propertyParams(options.properties),
          Metadata: options.metadata,
          ...this.#encryption,
          ...conditionHeaders(options.condition),
        }),
        abortOf(options.signal),
      );
      return { etag: out.ETag ?? '' };
    } catch (error) {
      throw conditionalWriteError(error, this.describe(key), options.condition);
    }
  }

  async beginStaged(key: string, options: WriteOptions): Promise<StagedUpload> {
    try {
      const out = await this.#client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.container,
          Key: key,
          // Every part carries its CRC32, which S3 verifies on upload and again at the commit.
          ChecksumAlgorithm: 'CRC32',
          ...propertyParams(options.properties),
          Metadata: options.metadata,
          ...this.#encryption,
        }),
        abortOf(options.signal),
      );
      if (!out.UploadId) throw new PermanentError(`${this.describe(key)}: no upload id returned`);
      return { key, uploadId: out.UploadId };
    } catch (error) {
      throw classifyS3Error(error, this.describe(key));
    }
  }

  async stagePart(
    upload: StagedUpload,
    partNumber: number,
    body: Buffer,
    options: StagePartOptions = {},
  ): Promise<StagedPart> {
    const checksum = crc32Of(body);
    try {
      const out = await this.#client.send(
        new UploadPartCommand({
          Bucket: this.container,
          Key: upload.key,
          UploadId: upload.uploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: body.length,
          ChecksumCRC32: checksum,
          ...(options.md5 && { ContentMD5: options.md5.toString('base64') }),
        }),
        abortOf(options.signal),
      );
      return { partNumber, size: body.length, token: out.ETag ?? '', checksum };
    } catch (error) {
      throw classifyS3Error(error, `${this.describe(upload.key)} part ${partNumber}`);
    }
  }

  /**
   * Uploads a part from a stream without holding it: sent aws-chunked with its CRC32 in a
   * trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER), which S3 verifies before it keeps the part
   * and returns in the response. The SDK does not retry a streamed request (a consumed stream
   * cannot be sent again); the copy engine retries the part from the source.
   * https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
   * https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity-upload.html
   */
  async stagePartStream(
    upload: StagedUpload,
    partNumber: number,
    body: Readable,
    size: number,
    options: CallOptions = {},
  ): Promise<StagedPart> {
    const what = `${this.describe(upload.key)} part ${partNumber}`;
    const encoded = awsChunkedWithCrc32(size);
    // A body that fails fails the part: the request then ends through the caller's signal
    // (the HTTP client pipes the body, and a pipe does not pass errors on).
    body.on('error', (error) => encoded.destroy(error));
    encoded.on('error', () => undefined);
    body.pipe(encoded);
    const command = new UploadPartCommand({
      Bucket: this.container,
      Key: upload.key,
      UploadId: upload.uploadId,
      PartNumber: partNumber,
      Body: encoded,
    });
    command.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { headers: Record<string, string> };
        delete request.headers['content-length'];
        Object.assign(request.headers, {
          'content-encoding': 'aws-chunked',
          'transfer-encoding': 'chunked',
          'x-amz-decoded-content-length': String(size),
          'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
          'x-amz-trailer': CRC32_TRAILER,
        });
        return next(args);
      },
      { step: 'build', name: 's3azAwsChunked' },
    );
    let out: UploadPartCommandOutput;
    try {
      out = await this.#client.send(command, abortOf(options.signal));
    } catch (error) {
      throw classifyS3Error(error, what);
    } finally {
      body.unpipe(encoded);
    }
    const checksum = out.ChecksumCRC32 ?? encoded.checksum();
    if (!checksum || checksum !== encoded.checksum()) {
      // The commit must repeat each part's checksum as S3 computed it.
      throw new RetryableError(`${what}: S3 did not confirm the part's CRC32`);
    }
    return { partNumber, size, token: out.ETag ?? '', checksum };
  }

  async listStaged(upload: StagedUpload, options: CallOptions = {}): Promise<StagedPart[]> {
    const parts: StagedPart[] = [];
    let marker: string | undefined;
    try {
      for (;;) {
        const out = await this.#client.send(
          new ListPartsCommand({
            Bucket: this.container,
            Key: upload.key,
            UploadId: upload.uploadId,
            ...(marker !== undefined && { PartNumberMarker: marker }),
          }),
          abortOf(options.signal),
        );
        for (const part of out.Parts ?? []) {
          if (part.PartNumber === undefined || part.ETag === undefined) continue;
          parts.push({
            partNumber: part.PartNumber,
            size: part.Size ?? 0,
            token: part.ETag,
            ...(part.ChecksumCRC32 !== undefined && { checksum: part.ChecksumCRC32 }),
          });
        }
        if (!out.IsTruncated || out.NextPartNumberMarker === undefined) return parts;
        marker = out.NextPartNumberMarker;
      }
    } catch (error) {
      throw classifyS3Error(error, this.describe(upload.key));
    }
  }

  async commitStaged(
    upload: StagedUpload,
    parts: StagedPart[],
    options: CommitOptions,
  ): Promise<PutResult> {
    try {
      const out = await this.#client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.container,
          Key: upload.key,
          UploadId: upload.uploadId,
          MultipartUpload: {
            Parts: [...parts]
              .sort((a, b) => a.partNumber - b.partNumber)
              .map((part) => ({
                PartNumber: part.partNumber,
                ETag: part.token,
                ...(part.checksum !== undefined && { ChecksumCRC32: part.checksum }),
              })),
          },
          // S3 refuses the commit if the parts do not add up to this size.
          MpuObjectSize: options.expectedSize,
          ...conditionHeaders(options.condition),
        }),
        abortOf(options.signal),
      );
      return { etag: out.ETag ?? '' };
    } catch (error) {
      throw conditionalWriteError(error, this.describe(upload.key), options.condition);
    }
  }

  async abortStaged(upload: StagedUpload, options: CallOptions = {}): Promise<void> {
    try {
      await this.#client.send(
        new AbortMultipartUploadCommand({
          Bucket: this.container,
          Key: upload.key,
          UploadId: upload.uploadId,
        }),
        abortOf(options.signal),
      );
    } catch (error) {
      const classified = classifyS3Error(error, this.describe(upload.key));
      if (!(classified instanceof NotFoundError)) throw classified;
    }
  }

  async delete(
    key: string,
    options: CallOptions & { condition?: WriteCondition } = {},
  ): Promise<void> {
    try {
      await this.#client.send(
        new DeleteObjectCommand({
          Bucket: this.container,
          Key: key,
          ...(options.condition?.kind === 'match' && { IfMatch: options.condition.etag }),
        }),
        abortOf(options.signal),
      );
    } catch (error) {
      const classified = classifyS3Error(error, this.describe(key));
      if (!(classified instanceof NotFoundError)) throw classified;
    }
  }

  /** ListObjectsV2 carries no user metadata: `options.metadata` changes nothing here. */
  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    try {
      const out = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.container,
          Prefix: prefix,
          ...(options.continuationToken !== undefined && {
            ContinuationToken: options.continuationToken,
          }),
          ...(options.maxResults !== undefined && { MaxKeys: options.maxResults }),
        }),
        abortOf(options.signal),
      );
      const items = (out.Contents ?? []).flatMap((item) =>
        item.Key === undefined
          ? []
          : [
              {
                key: item.Key,
                size: item.Size ?? 0,
                etag: item.ETag ?? '',
                lastModified: item.LastModified ?? new Date(0),
              },
            ],
      );
      return {
        items,
        ...(out.IsTruncated &&
          out.NextContinuationToken !== undefined && {
            continuationToken: out.NextContinuationToken,
          }),
      };
    } catch (error) {
      throw classifyS3Error(error, `s3://${this.container}/${prefix}`);
    }
  }

  async presignGet(
    key: string,
    options: { versionId?: string; expiresInSeconds: number },
  ): Promise<string> {
    try {
      return await getSignedUrl(
        this.#client,
        new GetObjectCommand({
          Bucket: this.container,
          Key: key,
          ...(options.versionId !== undefined && { VersionId: options.versionId }),
        }),
        { expiresIn: options.expiresInSeconds },
      );
    } catch (error) {
      throw classifyS3Error(error, this.describe(key));
    }
  }
}
