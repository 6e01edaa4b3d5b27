import type { Readable } from 'node:stream';

/** Which cloud an object lives in. */
export type Side = 's3' | 'azure';

/** The standard HTTP properties both stores keep beside the bytes. */
export interface ObjectProperties {
  contentType?: string;
  contentEncoding?: string;
  contentLanguage?: string;
  contentDisposition?: string;
  cacheControl?: string;
}

/** What `head` and `list` know about one object. */
export interface ObjectHead {
  key: string;
  size: number;
  /** The store's entity tag, quoted as the store returns it. */
  etag: string;
  lastModified: Date;
  /** S3 version id when the bucket is versioned. */
  versionId?: string;
  /**
   * Base64 MD5 of the whole content, where the store vouches for it: Azure's Content-MD5
   * property, or an S3 ETag that is the MD5 of the data (see `S3ObjectStore.head`).
   */
  contentMd5?: string;
  properties: ObjectProperties;
  /** User metadata with the store's own (native) names. */
  metadata: Record<string, string>;
}

/** One entry of a listing page. */
export interface ListedObject {
  key: string;
  size: number;
  etag: string;
  lastModified: Date;
  /** Base64 MD5 of the content, where the listing carries one the store vouches for (Azure). */
  contentMd5?: string;
  /**
   * User metadata with the store's native names, when `ListOptions.metadata` asked for it and
   * the listing carries it (Azure: `include=metadata`). S3 listings carry none: absent there.
   */
  metadata?: Record<string, string>;
}

export interface ListOptions extends CallOptions {
  continuationToken?: string;
  maxResults?: number;
  /** Ask for each object's user metadata where the store's listing can carry it. */
  metadata?: boolean;
}

/** One page of a listing. */
export interface ListPage {
  items: ListedObject[];
  /** Present when there is another page. */
  continuationToken?: string;
}

/** Inclusive byte range, as in an HTTP Range header. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * The destination state a write is conditional on: `absent` sends `If-None-Match: *`,
 * `match` sends `If-Match: <etag>`, `any` is unconditional.
 */
export type WriteCondition = { kind: 'absent' } | { kind: 'match'; etag: string } | { kind: 'any' };

/** Stores' hard limits, used by the range planner. */
export interface StoreLimits {
  /** Largest object the store can hold, in bytes. */
  maxObjectSize: number;
  /** Largest object one single-request write can take. */
  maxSinglePutSize: number;
  /** Most parts (S3) or blocks (Azure) one object can be committed from. */
  maxParts: number;
  /** Smallest part except the last (S3: 5 MiB); 1 where the store has no minimum. */
  minPartSize: number;
  /** Largest single part or block. */
  maxPartSize: number;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface GetOptions extends CallOptions {
  range?: ByteRange;
  /** Read only if the object still has this eTag; a 412 becomes PreconditionFailedError. */
  ifMatch?: string;
}

export interface ObjectBody {
  body: Readable;
  contentLength: number;
  etag: string;
}

export interface WriteOptions extends CallOptions {
  properties: ObjectProperties;
  /** User metadata with the store's own (native) names. */
  metadata: Record<string, string>;
  condition: WriteCondition;
}

export interface PutOptions extends WriteOptions {
  /**
   * MD5 of the body, when the caller has it; the store verifies it. Without it the store
   * computes the checksum it verifies best itself (S3: CRC32, Azure: MD5).
   */
  md5?: Buffer;
}

export interface PutResult {
  etag: string;
}

/** An open staged write: an S3 multipart upload or a set of uncommitted Azure blocks. */
export interface StagedUpload {
  key: string;
  /** S3 upload id, or for Azure the prefix that names this copy's blocks. */
  uploadId: string;
}

/** One staged part or block. */
export interface StagedPart {
  /** 1-based. */
  partNumber: number;
  size: number;
  /** What the commit needs: the S3 part ETag or the Azure block id. */
  token: string;
  /** The part's checksum, where the commit must repeat it (S3 CRC32, base64). */
  checksum?: string;
}

export interface StagePartOptions extends CallOptions {
  /** MD5 of the body, when the caller has it; see `PutOptions.md5`. */
  md5?: Buffer;
}

export interface CommitOptions extends WriteOptions {
  /** Sum of the part sizes; the commit fails rather than write another size. */
  expectedSize: number;
}

/** A whole object read in one request: what `head` knows, and its bytes when small enough. */
export interface SmallObject {
  head: ObjectHead;
  /** The bytes of `head`'s version; absent when the object is larger than asked for. */
  body?: Buffer;
}

/**
 * A store that reads a whole small object and its properties in one GET, instead of a HEAD and
 * then a GET: the GET's answer carries everything HEAD does.
 */
export interface SmallReads {
  /**
   * The object's head and, when it holds at most `maxBytes`, its bytes (a larger body is not
   * read); `undefined` only when the object does not exist.
   */
  getSmall(key: string, maxBytes: number, options?: CallOptions): Promise<SmallObject | undefined>;
}

export function readsSmall(store: ObjectStore): store is ObjectStore & SmallReads {
  return typeof (store as Partial<SmallReads>).getSmall === 'function';
}

/** The one interface every store implements. Small and streaming. */
export interface ObjectStore {
  readonly side: Side;
  /** Bucket or container name. */
  readonly container: string;
  readonly limits: StoreLimits;

  /** A URI naming the object, for messages: `s3://bucket/key`, `az://container/key`. */
  describe(key: string): string;
  /** `undefined` only when the object does not exist; every other failure throws. */
  head(key: string, options?: CallOptions): Promise<ObjectHead | undefined>;
  get(key: string, options?: GetOptions): Promise<ObjectBody>;
  put(key: string, body: Buffer, options: PutOptions): Promise<PutResult>;

  /** Opens a staged write. `stagingId` (Azure) names the blocks so a later run can resume. */
  beginStaged(key: string, options: WriteOptions, stagingId: string): Promise<StagedUpload>;
  stagePart(
    upload: StagedUpload,
    partNumber: number,
    body: Buffer,
    options?: StagePartOptions,
  ): Promise<StagedPart>;
  /** What is already staged for this upload (the resume checkpoint). */
  listStaged(upload: StagedUpload, options?: CallOptions): Promise<StagedPart[]>;
  commitStaged(
    upload: StagedUpload,
    parts: StagedPart[],
    options: CommitOptions,
  ): Promise<PutResult>;
  abortStaged(upload: StagedUpload, options?: CallOptions): Promise<void>;

  /** Deletes the object; a missing object is not an error. */
  delete(key: string, options?: CallOptions & { condition?: WriteCondition }): Promise<void>;
  list(prefix: string, options?: ListOptions): Promise<ListPage>;
  /** Confirms the bucket or container exists and is reachable with these credentials. */
  checkContainer(options?: CallOptions): Promise<void>;
}

/**
 * A store that takes a part as a stream of known size and verifies a checksum sent after the
 * bytes (S3: aws-chunked with an `x-amz-checksum-crc32` trailer), so a part need not be held
 * whole to be sent with its checksum.
 */
export interface StreamedParts {
  stagePartStream(
    upload: StagedUpload,
    partNumber: number,
    body: Readable,
    size: number,
    options?: CallOptions,
  ): Promise<StagedPart>;
}

export function streamsParts(store: ObjectStore): store is ObjectStore & StreamedParts {
  return typeof (store as Partial<StreamedParts>).stagePartStream === 'function';
}

/** A store that can hand out short-lived read URLs (S3 presigned GET). */
export interface Presigner {
  presignGet(
    key: string,
    options: { versionId?: string; expiresInSeconds: number },
  ): Promise<string>;
}

/** A store that can pull bytes from a URL itself (Azure Put Block From URL / Put Blob From URL). */
export interface PullFromUrl {
  stagePartFromUrl(
    upload: StagedUpload,
    partNumber: number,
    sourceUrl: string,
    range: ByteRange,
    options?: CallOptions,
  ): Promise<StagedPart>;
  putFromUrl(
    key: string,
    sourceUrl: string,
    size: number,
    options: WriteOptions,
  ): Promise<PutResult>;
}

export function isPresigner(store: ObjectStore): store is ObjectStore & Presigner {
  return typeof (store as Partial<Presigner>).presignGet === 'function';
}

export function isPullFromUrl(store: ObjectStore): store is ObjectStore & PullFromUrl {
  return typeof (store as Partial<PullFromUrl>).stagePartFromUrl === 'function';
}
