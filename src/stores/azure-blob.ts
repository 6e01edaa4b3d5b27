import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type {
  BlobDownloadResponseParsed,
  BlobHTTPHeaders,
  BlobRequestConditions,
  ContainerClient,
} from '@azure/storage-blob';
import { OWN_CLIENT_REQUEST_ID_PREFIX } from '../core/metadata.ts';
import { AZURE_BLOCK_BLOB_LIMITS } from '../core/range-plan.ts';
import { NotFoundError, PermanentError } from '../errors.ts';
import { azureErrorCode, classifyAzureError, classifyAzurePullError } from './azure-errors.ts';
import type {
  ByteRange,
  CallOptions,
  CommitOptions,
  GetOptions,
  ListOptions,
  ListPage,
  ObjectBody,
  ObjectHead,
  ObjectProperties,
  ObjectStore,
  PullFromUrl,
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

/** Length of the staging id inside every block id; Azure requires equal-length ids per blob. */
const STAGING_ID_LENGTH = 16;
const PART_DIGITS = 6;

/** Block id for part `partNumber` of staging `uploadId`: base64 of `<uploadId>-<000001>`. */
export function blockIdFor(uploadId: string, partNumber: number): string {
  return Buffer.from(`${uploadId}-${String(partNumber).padStart(PART_DIGITS, '0')}`).toString(
    'base64',
  );
}

function parseBlockId(blockId: string): { uploadId: string; partNumber: number } | undefined {
  const text = Buffer.from(blockId, 'base64').toString('utf8');
  const match = /^(.+)-(\d+)$/.exec(text);
  if (!match?.[1] || !match[2]) return undefined;
  return { uploadId: match[1], partNumber: Number(match[2]) };
}

function md5Of(body: Buffer): Buffer {
  return createHash('md5').update(body).digest();
}

function abortOf(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal ? { abortSignal: signal } : {};
}

function conditions(condition: WriteCondition | undefined): BlobRequestConditions {
  if (condition?.kind === 'absent') return { ifNoneMatch: '*' };
  if (condition?.kind === 'match') return { ifMatch: condition.etag };
  return {};
}

function httpHeaders(properties: ObjectProperties, md5?: Buffer): BlobHTTPHeaders {
  return {
    ...(properties.contentType !== undefined && { blobContentType: properties.contentType }),
    ...(properties.contentEncoding !== undefined && {
      blobContentEncoding: properties.contentEncoding,
    }),
    ...(properties.contentLanguage !== undefined && {
      blobContentLanguage: properties.contentLanguage,
    }),
    ...(properties.contentDisposition !== undefined && {
      blobContentDisposition: properties.contentDisposition,
    }),
    ...(properties.cacheControl !== undefined && { blobCacheControl: properties.cacheControl }),
    ...(md5 && { blobContentMD5: md5 }),
  };
}

function definedProperties(source: {
  contentType?: string | undefined;
  contentEncoding?: string | undefined;
  contentLanguage?: string | undefined;
  contentDisposition?: string | undefined;
  cacheControl?: string | undefined;
}): ObjectProperties {
  const properties: ObjectProperties = {};
  if (source.contentType) properties.contentType = source.contentType;
  if (source.contentEncoding) properties.contentEncoding = source.contentEncoding;
  if (source.contentLanguage) properties.contentLanguage = source.contentLanguage;
  if (source.contentDisposition) properties.contentDisposition = source.contentDisposition;
  if (source.cacheControl) properties.cacheControl = source.cacheControl;
  return properties;
}

/** What Get Blob Properties and a whole Get Blob say of a blob, alike. */
function headOf(
  key: string,
  out: {
    contentLength?: number | undefined;
    etag?: string | undefined;
    lastModified?: Date | undefined;
    contentMD5?: Uint8Array | undefined;
    metadata?: Record<string, string> | undefined;
    contentType?: string | undefined;
    contentEncoding?: string | undefined;
    contentLanguage?: string | undefined;
    contentDisposition?: string | undefined;
    cacheControl?: string | undefined;
  },
): ObjectHead {
  return {
    key,
    size: out.contentLength ?? 0,
    etag: out.etag ?? '',
    lastModified: out.lastModified ?? new Date(0),
    // Put Blob stores the MD5 it computes; Put Block List keeps what the client sends and
    // clears it otherwise, so a replica overwritten by any client shows another (or none).
    // https://learn.microsoft.com/rest/api/storageservices/put-block-list
    ...(out.contentMD5 !== undefined &&
      out.contentMD5.length === 16 && {
        contentMd5: Buffer.from(out.contentMD5).toString('base64'),
      }),
    properties: definedProperties(out),
    metadata: { ...(out.metadata ?? {}) },
  };
}

/** The part of the Azure SDK's request pipeline that `markOwnRequests` uses. */
interface RequestPipeline {
  addPolicy(policy: {
    name: string;
    sendRequest(
      request: { requestId: string; headers: { set(name: string, value: string): void } },
      next: (request: unknown) => Promise<unknown>,
    ): Promise<unknown>;
  }): void;
  getOrderedPolicies(): Array<{ name: string }>;
}

const OWN_REQUESTS_POLICY = 's3azOwnClientRequestId';

/**
 * Makes every request of `client` (and of the other clients that share its pipeline: the
 * service client it came from and its other containers) carry
 * `x-ms-client-request-id: s3az-replicator-<uuid>`, which Event Grid reports as the event's
 * `clientRequestId`: the replicator's own writes announce themselves without a read. The
 * pipeline is the SDK's (storage-blob 12); without it, nothing is marked and each replica's
 * event is recognised by its metadata instead, one read later.
 */
function markOwnRequests(client: ContainerClient): void {
  const pipeline = (client as unknown as { storageClientContext?: { pipeline?: RequestPipeline } })
    .storageClientContext?.pipeline;
  if (!pipeline || typeof pipeline.addPolicy !== 'function') return;
  if (pipeline.getOrderedPolicies().some((policy) => policy.name === OWN_REQUESTS_POLICY)) return;
  pipeline.addPolicy({
    name: OWN_REQUESTS_POLICY,
    sendRequest: (request, next) => {
      request.headers.set(
        'x-ms-client-request-id',
        OWN_CLIENT_REQUEST_ID_PREFIX + request.requestId,
      );
      return next(request);
    },
  });
}

/** `ObjectStore` over one Azure Blob container (block blobs; ADLS Gen2 accounts included). */
export class AzureBlobObjectStore implements ObjectStore, PullFromUrl, SmallReads {
  readonly side = 'azure' as const;
  readonly limits = AZURE_BLOCK_BLOB_LIMITS;
  readonly container: string;
  readonly #client: ContainerClient;
  readonly #scope: { encryptionScope?: string };

  /**
   * With `encryptionScope`, every blob and block this store writes uses that scope. With
   * `replicaWrites` (the replicator's stores, whose every write is a replica or the delete of
   * one), requests carry the replicator's client request id (`markOwnRequests`); the `s3az copy`
   * command's stores do not, since its Azure -> Azure copies are not replicas.
   */
  constructor(
    client: ContainerClient,
    options: { encryptionScope?: string; replicaWrites?: boolean } = {},
  ) {
    this.#client = client;
    if (options.replicaWrites) markOwnRequests(client);
    this.container = client.containerName;
    this.#scope = options.encryptionScope ? { encryptionScope: options.encryptionScope } : {};
  }

  describe(key: string): string {
    return `az://${this.container}/${key}`;
  }

  async checkContainer(options: CallOptions = {}): Promise<void> {
    try {
      await this.#client.getProperties(abortOf(options.signal));
    } catch (error) {
      const classified = classifyAzureError(error, `az://${this.container}`);
      if (classified instanceof NotFoundError) {
        throw new NotFoundError(`az://${this.container}: container does not exist`, {
          cause: error,
        });
      }
      throw classified;
    }
  }

  /** `undefined` for a blob that is not there (its container is); anything else is thrown. */
  #absent(error: unknown, key: string): undefined {
    const classified = classifyAzureError(error, this.describe(key));
    if (classified instanceof NotFoundError && azureErrorCode(error) !== 'ContainerNotFound') {
      return undefined;
    }
    throw classified;
  }

  async head(key: string, options: CallOptions = {}): Promise<ObjectHead | undefined> {
    try {
      const out = await this.#client.getBlobClient(key).getProperties(abortOf(options.signal));
      return headOf(key, out);
    } catch (error) {
      return this.#absent(error, key);
    }
  }

  async getSmall(
    key: string,
    maxBytes: number,
    options: CallOptions = {},
  ): Promise<SmallObject | undefined> {
    let out: BlobDownloadResponseParsed;
    try {
      out = await this.#client.getBlobClient(key).download(0, undefined, {
        ...abortOf(options.signal),
        maxRetryRequests: 0,
      });
    } catch (error) {
      return this.#absent(error, key);
    }
    // Get Blob of the whole blob answers with the blob's own Content-MD5 property, as Get Blob
    // Properties does. https://learn.microsoft.com/rest/api/storageservices/get-blob
    return smallObjectOf(
      headOf(key, out),
      out.readableStreamBody as Readable | undefined,
      maxBytes,
      this.describe(key),
    );
  }

  async get(key: string, options: GetOptions = {}): Promise<ObjectBody> {
    try {
      const offset = options.range?.start ?? 0;
      const count = options.range ? options.range.end - options.range.start + 1 : undefined;
      const out = await this.#client.getBlobClient(key).download(offset, count, {
        ...abortOf(options.signal),
        ...(options.ifMatch !== undefined && { conditions: { ifMatch: options.ifMatch } }),
        // One request per range; the copy engine retries whole ranges itself.
        maxRetryRequests: 0,
      });
      if (!out.readableStreamBody) {
        throw new PermanentError(`${this.describe(key)}: download returned no body`);
      }
      return {
        body: out.readableStreamBody as Readable,
        contentLength: out.contentLength ?? 0,
        etag: out.etag ?? '',
      };
    } catch (error) {
      throw classifyAzureError(error, this.describe(key));
    }
  }

  async put(key: string, body: Buffer, options: PutOptions): Promise<PutResult> {
    try {
      const out = await this.#client.getBlockBlobClient(key).upload(body, body.length, {
        ...abortOf(options.signal),
        ...this.#scope,
        // Put Blob verifies x-ms-blob-content-md5 against the body and stores it.
        blobHTTPHeaders: httpHeaders(options.properties, options.md5 ?? md5Of(body)),
        metadata: options.metadata,
        conditions: conditions(options.condition),
      });
      return { etag: out.etag ?? '' };
    } catch (error) {
      throw classifyAzureError(error, this.describe(key));
    }
  }

  async beginStaged(
    _key: string,
    _options: WriteOptions,
    stagingId: string,
  ): Promise<StagedUpload> {
    // Azure has no upload to open: blocks are staged on the blob itself and named by stagingId.
    if (stagingId.length !== STAGING_ID_LENGTH || !/^[A-Za-z0-9]+$/.test(stagingId)) {
      throw new PermanentError(
        `staging id must be ${STAGING_ID_LENGTH} alphanumeric characters, got ${stagingId.length}`,
      );
    }
    return { key: _key, uploadId: stagingId };
  }

  async stagePart(
    upload: StagedUpload,
    partNumber: number,
    body: Buffer,
    options: StagePartOptions = {},
  ): Promise<StagedPart> {
    const blockId = blockIdFor(upload.uploadId, partNumber);
    try {
      await this.#client.getBlockBlobClient(upload.key).stageBlock(blockId, body, body.length, {
        ...abortOf(options.signal),
        ...this.#scope,
        // Azure verifies the block's MD5 before it stages it.
        transactionalContentMD5: options.md5 ?? md5Of(body),
      });
      return { partNumber, size: body.length, token: blockId };
    } catch (error) {
      throw classifyAzureError(error, `${this.describe(upload.key)} block ${partNumber}`);
    }
  }

  async listStaged(upload: StagedUpload, options: CallOptions = {}): Promise<StagedPart[]> {
    let blocks: Array<{ name: string; size: number }>;
    try {
      const out = await this.#client
        .getBlockBlobClient(upload.key)
        .getBlockList('uncommitted', abortOf(options.signal));
      blocks = out.uncommittedBlocks ?? [];
    } catch (error) {
      const classified = classifyAzureError(error, this.describe(upload.key));
      // No blob and no blocks yet: nothing is staged.
      if (classified instanceof NotFoundError && azureErrorCode(error) !== 'ContainerNotFound') {
        return [];
      }
      throw classified;
    }
    return blocks.flatMap((block) => {
      const parsed = parseBlockId(block.name);
      return parsed?.uploadId === upload.uploadId
        ? [{ partNumber: parsed.partNumber, size: block.size, token: block.name }]
        : [];
    });
  }

  async commitStaged(
    upload: StagedUpload,
    parts: StagedPart[],
    options: CommitOptions,
  ): Promise<PutResult> {
    const ordered = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    // Put Block List takes no size, so check what is staged adds up before committing it.
    const staged = new Map(
      (await this.listStaged(upload, options)).map((part) => [part.token, part.size]),
    );
    let total = 0;
    for (const part of ordered) {
      const size = staged.get(part.token);
      if (size !== part.size) {
        throw new PermanentError(
          `${this.describe(upload.key)}: block ${part.partNumber} is staged with ${size ?? 'no'} bytes, expected ${part.size}`,
        );
      }
      total += part.size;
    }
    if (total !== options.expectedSize) {
      throw new PermanentError(
        `${this.describe(upload.key)}: blocks add up to ${total} bytes, expected ${options.expectedSize}`,
      );
    }
    try {
      const out = await this.#client.getBlockBlobClient(upload.key).commitBlockList(
        ordered.map((part) => part.token),
        {
          ...abortOf(options.signal),
          ...this.#scope,
          blobHTTPHeaders: httpHeaders(options.properties),
          metadata: options.metadata,
          conditions: conditions(options.condition),
        },
      );
      return { etag: out.etag ?? '' };
    } catch (error) {
      throw classifyAzureError(error, this.describe(upload.key));
    }
  }

  async abortStaged(): Promise<void> {
    // Azure discards uncommitted blocks by itself after 7 days; there is nothing to call.
  }

  async delete(
    key: string,
    options: CallOptions & { condition?: WriteCondition } = {},
  ): Promise<void> {
    try {
      await this.#client.getBlobClient(key).deleteIfExists({
        ...abortOf(options.signal),
        // A blob with snapshots (a user's backup tool, Azure Backup) cannot be deleted alone:
        // 409 SnapshotsPresent. Its snapshots go with it; the condition still applies to it.
        // https://learn.microsoft.com/rest/api/storageservices/delete-blob
        deleteSnapshots: 'include',
        conditions: conditions(options.condition),
      });
    } catch (error) {
      throw classifyAzureError(error, this.describe(key));
    }
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    try {
      const pages = this.#client
        .listBlobsFlat({
          ...(prefix && { prefix }),
          ...(options.metadata && { includeMetadata: true }),
          ...abortOf(options.signal),
        })
        .byPage({
          ...(options.continuationToken !== undefined && {
            continuationToken: options.continuationToken,
          }),
          maxPageSize: options.maxResults ?? 1000,
        });
      const page = await pages.next();
      if (page.done) return { items: [] };
      const items = page.value.segment.blobItems.map((blob) => ({
        key: blob.name,
        size: blob.properties.contentLength ?? 0,
        // Listings give the eTag without the quotes that HEAD and GET have.
        etag: blob.properties.etag.startsWith('"')
          ? blob.properties.etag
          : `"${blob.properties.etag}"`,
        lastModified: blob.properties.lastModified,
        // As in `head`: Put Blob's MD5, or what the client committed a block list with.
        ...(blob.properties.contentMD5 !== undefined &&
          blob.properties.contentMD5.length === 16 && {
            contentMd5: Buffer.from(blob.properties.contentMD5).toString('base64'),
          }),
        ...(options.metadata && { metadata: { ...(blob.metadata ?? {}) } }),
      }));
      return {
        items,
        ...(page.value.continuationToken && { continuationToken: page.value.continuationToken }),
      };
    } catch (error) {
      throw classifyAzureError(error, `az://${this.container}/${prefix}`);
    }
  }

  async stagePartFromUrl(
    upload: StagedUpload,
    partNumber: number,
    sourceUrl: string,
    range: ByteRange,
    options: CallOptions = {},
  ): Promise<StagedPart> {
    const blockId = blockIdFor(upload.uploadId, partNumber);
    const size = range.end - range.start + 1;
    try {
      await this.#client
        .getBlockBlobClient(upload.key)
        .stageBlockFromURL(blockId, sourceUrl, range.start, size, {
          ...abortOf(options.signal),
          ...this.#scope,
        });
      return { partNumber, size, token: blockId };
    } catch (error) {
      throw classifyAzurePullError(error, `${this.describe(upload.key)} block ${partNumber}`);
    }
  }

  async putFromUrl(
    key: string,
    sourceUrl: string,
    _size: number,
    options: WriteOptions,
  ): Promise<PutResult> {
    try {
      const out = await this.#client.getBlockBlobClient(key).syncUploadFromURL(sourceUrl, {
        ...abortOf(options.signal),
        ...this.#scope,
        blobHTTPHeaders: httpHeaders(options.properties),
        metadata: options.metadata,
        conditions: conditions(options.condition),
        copySourceBlobProperties: false,
      });
      return { etag: out.etag ?? '' };
    } catch (error) {
      throw classifyAzurePullError(error, this.describe(key));
    }
  }
}
