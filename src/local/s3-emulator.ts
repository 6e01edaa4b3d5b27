import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type BuildAppOptions, buildApp } from 'fauxqs';
import { decodeAwsChunked } from './aws-chunked.ts';
import {
  CHECKSUM_NAMES,
  checksumAlgorithmOf,
  checksumOf,
  isWellFormedChecksum,
} from './checksums.ts';
import { listInS3Order } from './s3-list-order.ts';
import {
  escapeXml,
  installS3Notifications,
  readBody,
  requestAccessKey,
} from './s3-notifications.ts';
import { hashOnce } from './s3-store-digests.ts';
import {
  createFauxqsS3Store,
  type FauxqsObject,
  type FauxqsS3Store,
  type ObjectVersion,
  S3Versions,
} from './s3-versioning.ts';
import { pollLikeSqs } from './sqs-long-poll.ts';

/** Where and how to run the S3 emulator. */
export interface S3EmulatorOptions {
  /** 0 or absent for any free port. */
  port?: number;
  host?: string;
  region?: string;
  /** When set, signed requests must use this access key id, or one of these. */
  accessKeyId?: string | string[];
}

/** A listening S3 (and SQS) emulator. */
export interface RunningS3Emulator {
  port: number;
  endpoint: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

/** Standard headers S3 keeps beside the bytes that fauxqs 1.9 drops (it keeps Content-Type). */
const KEPT_HEADERS = [
  'content-encoding',
  'content-language',
  'content-disposition',
  'cache-control',
  'expires',
] as const;

/** GetObject query parameters that override a response header, and the header each sets. */
const RESPONSE_OVERRIDES = {
  'response-content-type': 'content-type',
  'response-content-language': 'content-language',
  'response-expires': 'expires',
  'response-cache-control': 'cache-control',
  'response-content-disposition': 'content-disposition',
  'response-content-encoding': 'content-encoding',
} as const;

const MAX_PART_NUMBER = 10_000;
const PRECONDITION_FAILED = 'At least one of the pre-conditions you specified did not hold';

/** Properties of one object version: they apply only while the object still has `etag`. */
interface KeptProperties {
  etag: string;
  headers: Record<string, string>;
}

interface PartRecord {
  etag: string;
  size: number;
  lastModified: Date;
  /** CRC32 of the part's bytes, computed here; S3 checks the commit's part checksums against it. */
  crc32: string;
  /** Whether the part was sent with a CRC32 (then ListParts shows it). */
  crc32Sent: boolean;
}

interface UploadRecord {
  bucket: string;
  key: string;
  headers: Record<string, string>;
  initiated: Date;
  checksumAlgorithm?: string;
  /** The access key that started it (ListMultipartUploads' `Initiator`). */
  initiator?: string;
  parts: Map<number, PartRecord>;
}

type Operation =
  | 'PutObject'
  | 'CopyObject'
  | 'UploadPart'
  | 'UploadPartCopy'
  | 'CreateMultipartUpload'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'ListParts'
  | 'GetObject'
  | 'HeadObject'
  | 'DeleteObject'
  | 'Other';

interface RequestState {
  operation: Operation;
  bucket: string;
  key: string;
  uploadId?: string;
  /** The request's Content-Type, while it is hidden from fauxqs's body parsers. */
  contentType?: string;
  part?: { size: number; crc32: string; crc32Sent: boolean };
  /** Verified `x-amz-checksum-*` values, echoed in the response as S3 does. */
  checksums?: Array<[string, string]>;
  /** This layer answered the request itself (a version that is not fauxqs's current object). */
  served?: boolean;
  release?: () => void;
}

type BodyCheck =
  | { ok: true; body: Buffer; checksums: Array<[string, string]>; md5?: string }
  | { ok: false; status: number; code: string; message: string };

const state = new WeakMap<FastifyRequest, RequestState>();

function decodeXml(text: string): string {
  return text.replace(
    /&(quot|amp|lt|gt|apos|#(\d+)|#x([0-9a-fA-F]+));/g,
    (entity, name: string, dec?: string, hex?: string) => {
      if (dec) return String.fromCodePoint(Number(dec));
      if (hex) return String.fromCodePoint(Number.parseInt(hex, 16));
      return (
        ({ quot: '"', amp: '&', lt: '<', gt: '>', apos: "'" } as Record<string, string>)[name] ??
        entity
      );
    },
  );
}

function s3Error(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  reply.header('content-type', 'application/xml');
  reply.header('x-amz-error-code', code);
  return reply
    .status(status)
    .send(
      `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message></Error>`,
    );
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function queryOf(request: FastifyRequest): Record<string, string | undefined> {
  return (request.query ?? {}) as Record<string, string | undefined>;
}

function classify(request: FastifyRequest): RequestState | undefined {
  const params = request.params as { bucket?: string; '*'?: string } | undefined;
  const bucket = params?.bucket;
  const key = params?.['*'];
  if (!bucket || !key) return undefined;
  const query = queryOf(request);
  const uploadId = query.uploadId;
  const base = { bucket, key, ...(uploadId !== undefined && { uploadId }) };
  const copySource = header(request, 'x-amz-copy-source') !== undefined;
  switch (request.method) {
    case 'PUT':
      if (uploadId !== undefined && query.partNumber !== undefined) {
        return { ...base, operation: copySource ? 'UploadPartCopy' : 'UploadPart' };
      }
      return { ...base, operation: copySource ? 'CopyObject' : 'PutObject' };
    case 'POST':
      if ('uploads' in query) return { ...base, operation: 'CreateMultipartUpload' };
      if (uploadId !== undefined) return { ...base, operation: 'CompleteMultipartUpload' };
      return { ...base, operation: 'Other' };
    case 'DELETE':
      return {
        ...base,
        operation: uploadId !== undefined ? 'AbortMultipartUpload' : 'DeleteObject',
      };
    case 'GET':
      return { ...base, operation: uploadId !== undefined ? 'ListParts' : 'GetObject' };
    case 'HEAD':
      return { ...base, operation: 'HeadObject' };
    default:
      return { ...base, operation: 'Other' };
  }
}

function keptHeaders(request: FastifyRequest, names: readonly string[]): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const name of names) {
    let value = header(request, name);
    if (name === 'content-encoding' && value) {
      // aws-chunked describes the request body, not the object.
      value = value
        .split(',')
        .map((part) => part.trim())
        .filter((part) => part !== '' && part !== 'aws-chunked')
        .join(', ');
    }
    if (value) kept[name] = value;
  }
  return kept;
}

/** RFC 7232 entity-tag list match, as S3 does it: `*`, weak tags and missing quotes accepted. */
function etagMatches(list: string, etag: string): boolean {
  const bare = (tag: string) => tag.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
  return list.split(',').some((tag) => tag.trim() === '*' || bare(tag) === bare(etag));
}

/**
 * Evaluates GET-style preconditions against an object's eTag and last-modified time, in RFC
 * 7232 order. Returns the failing status (412 or 304), or undefined when the request may proceed.
 */
function evaluateReadConditions(
  conditions: {
    ifMatch?: string | undefined;
    ifNoneMatch?: string | undefined;
    ifModifiedSince?: string | undefined;
    ifUnmodifiedSince?: string | undefined;
  },
  etag: string,
  lastModified: Date,
  notModifiedStatus: number,
): number | undefined {
  const seconds = Math.floor(lastModified.getTime() / 1000);
  const since = (text: string) => Math.floor(new Date(text).getTime() / 1000);
  if (conditions.ifMatch !== undefined) {
    if (!etagMatches(conditions.ifMatch, etag)) return 412;
  } else if (conditions.ifUnmodifiedSince !== undefined) {
    const limit = since(conditions.ifUnmodifiedSince);
    if (!Number.isNaN(limit) && seconds > limit) return 412;
  }
  if (conditions.ifNoneMatch !== undefined) {
    if (etagMatches(conditions.ifNoneMatch, etag)) return notModifiedStatus;
  } else if (conditions.ifModifiedSince !== undefined) {
    const limit = since(conditions.ifModifiedSince);
    if (!Number.isNaN(limit) && seconds <= limit) return notModifiedStatus;
  }
  return undefined;
}

/** A `Range: bytes=` header's first and last byte in an object of `total` bytes, if satisfiable. */
function parseRange(range: string, total: number): { start: number; end: number } | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  const [first, last] = [match[1] ?? '', match[2] ?? ''];
  if (first === '') {
    const suffix = Number(last);
    return suffix === 0 ? undefined : { start: Math.max(total - suffix, 0), end: total - 1 };
  }
  const start = Number(first);
  const end = last === '' ? total - 1 : Math.min(Number(last), total - 1);
  return start >= total || start > end ? undefined : { start, end };
}

/**
 * Answers GetObject or HeadObject for a stored version that fauxqs does not hold (it holds
 * only the current one), as fauxqs and this layer answer for a current object.
 */
function serveVersion(
  request: FastifyRequest,
  reply: FastifyReply,
  version: ObjectVersion,
  operation: 'GetObject' | 'HeadObject',
): FastifyReply {
  const { object } = version;
  const failed = evaluateReadConditions(
    {
      ifMatch: header(request, 'if-match'),
      ifNoneMatch: header(request, 'if-none-match'),
      ifModifiedSince: header(request, 'if-modified-since'),
      ifUnmodifiedSince: header(request, 'if-unmodified-since'),
    },
    object.etag,
    object.lastModified,
    304,
  );
  if (failed === 412) return s3Error(reply, 412, 'PreconditionFailed', PRECONDITION_FAILED);
  reply.header('x-amz-version-id', version.versionId);
  reply.header('etag', object.etag);
  reply.header('last-modified', object.lastModified.toUTCString());
  if (failed === 304) return reply.code(304).send();
  reply.header('content-type', object.contentType);
  for (const [name, value] of Object.entries(object.metadata)) {
    reply.header(`x-amz-meta-${name}`, value);
  }
  for (const [name, value] of Object.entries(version.headers)) reply.header(name, value);
  reply.header('accept-ranges', 'bytes');
  const range = header(request, 'range');
  if (operation === 'GetObject' && range !== undefined) {
    const bytes = parseRange(range, object.contentLength);
    if (!bytes) {
      reply.header('content-range', `bytes */${object.contentLength}`);
      return s3Error(reply, 416, 'InvalidRange', 'The requested range is not satisfiable');
    }
    reply.header('content-range', `bytes ${bytes.start}-${bytes.end}/${object.contentLength}`);
    return reply.code(206).send(object.body.subarray(bytes.start, bytes.end + 1));
  }
  if (operation === 'HeadObject') {
    reply.header('content-length', object.contentLength);
    return reply.code(200).send();
  }
  return reply.code(200).send(object.body);
}

/** `bucket/key` of an `x-amz-copy-source` value, without its `?versionId=`. */
function parseCopySource(value: string): { bucket: string; key: string } | undefined {
  const path = value.split('?')[0] ?? '';
  const decoded = decodeURIComponent(path).replace(/^\//, '');
  const slash = decoded.indexOf('/');
  if (slash <= 0) return undefined;
  return { bucket: decoded.slice(0, slash), key: decoded.slice(slash + 1) };
}

function parseCompletedParts(
  xml: string,
): Array<{ partNumber: number; etag: string; crc32?: string }> {
  return [...xml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].flatMap((match) => {
    const inner = match[1] ?? '';
    const number = /<PartNumber>\s*(\d+)\s*<\/PartNumber>/.exec(inner)?.[1];
    const etag = /<ETag>([\s\S]*?)<\/ETag>/.exec(inner)?.[1];
    const crc32 = /<ChecksumCRC32>([^<]*)<\/ChecksumCRC32>/.exec(inner)?.[1];
    return number && etag !== undefined
      ? [
          {
            partNumber: Number(number),
            etag: decodeXml(etag).trim(),
            ...(crc32 !== undefined && { crc32: crc32.trim() }),
          },
        ]
      : [];
  });
}

/**
 * Decodes an aws-chunked body and verifies what the request says about its bytes: the decoded
 * length, Content-MD5 and `x-amz-checksum-*` (as a header or as an aws-chunked trailer).
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
 */
function checkBody(request: FastifyRequest): BodyCheck {
  const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
  let body = raw;
  let trailers: Record<string, string> = {};
  if ((header(request, 'content-encoding') ?? '').includes('aws-chunked')) {
    const decoded = decodeAwsChunked(raw);
    if (!decoded) {
      return {
        ok: false,
        status: 400,
        code: 'IncompleteBody',
        message: 'The request body is not a well-formed aws-chunked body.',
      };
    }
    if (decoded.smallChunk) {
      return {
        ok: false,
        status: 403,
        code: 'InvalidChunkSizeError',
        message: `Only the last chunk is allowed to have a size less than 8192 bytes (chunk ${decoded.smallChunk.chunk} has ${decoded.smallChunk.size})`,
      };
    }
    body = decoded.data;
    trailers = decoded.trailers;
  }
  const declared = header(request, 'x-amz-decoded-content-length');
  if (declared !== undefined && Number(declared) !== body.length) {
    return {
      ok: false,
      status: 400,
      code: 'IncompleteBody',
      message:
        'You did not provide the number of bytes specified by the Content-Length HTTP header.',
    };
  }
  const md5 = header(request, 'content-md5');
  let md5Hex: string | undefined;
  if (md5 !== undefined) {
    if (!/^[A-Za-z0-9+/]{22}==$/.test(md5)) {
      return {
        ok: false,
        status: 400,
        code: 'InvalidDigest',
        message: 'The Content-MD5 you specified was invalid.',
      };
    }
    const digest = createHash('md5').update(body).digest();
    if (digest.toString('base64') !== md5) {
      return {
        ok: false,
        status: 400,
        code: 'BadDigest',
        message: 'The Content-MD5 you specified did not match what we received.',
      };
    }
    md5Hex = digest.toString('hex');
  }
  const given = new Map<string, string>();
  for (const [name, value] of Object.entries(trailers)) {
    if (name.startsWith('x-amz-checksum-')) given.set(name, value);
  }
  for (const [name, value] of Object.entries(request.headers)) {
    if (name.startsWith('x-amz-checksum-') && typeof value === 'string') given.set(name, value);
  }
  const checksums: Array<[string, string]> = [];
  for (const [name, value] of given) {
    const algorithm = checksumAlgorithmOf(name);
    // Other names (`-algorithm`, `-type`, `-mode`, CRC64NVME) are not a checksum to verify here.
    if (!algorithm) continue;
    if (!isWellFormedChecksum(algorithm, value)) {
      return {
        ok: false,
        status: 400,
        code: 'InvalidRequest',
        message: `Value for ${name} header is invalid.`,
      };
    }
    if (checksumOf(algorithm, body) !== value) {
      return {
        ok: false,
        status: 400,
        code: 'BadDigest',
        message: `The ${CHECKSUM_NAMES[algorithm]} you specified did not match the calculated checksum.`,
      };
    }
    checksums.push([name, value]);
  }
  return { ok: true, body, checksums, ...(md5Hex !== undefined && { md5: md5Hex }) };
}

/** Per-key lock so a conditional check and its write cannot interleave with another write. */
class KeyLocks {
  readonly #tails = new Map<string, Promise<void>>();

  async acquire(id: string): Promise<() => void> {
    const previous = this.#tails.get(id) ?? Promise.resolve();
    let release = () => {};
    const current = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => current);
    this.#tails.set(id, tail);
    await previous;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
      if (this.#tails.get(id) === tail) this.#tails.delete(id);
    };
  }
}

/** The account every local access key belongs to, in the ARNs this emulator shows. */
export const LOCAL_ACCOUNT_ID = '000000000000';

/**
 * ListMultipartUploads' `Initiator` of an upload started with `accessKey`: as S3 shows an
 * IAM user (its ARN and name), each access key here standing for a user of that name.
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_Initiator.html
 */
function initiatorXml(accessKey: string | undefined): string {
  if (accessKey === undefined) return '';
  const name = escapeXml(accessKey);
  return `<Initiator><ID>arn:aws:iam::${LOCAL_ACCOUNT_ID}:user/${name}</ID><DisplayName>${name}</DisplayName></Initiator><Owner><ID>${LOCAL_ACCOUNT_ID}</ID><DisplayName>local</DisplayName></Owner>`;
}

/**
 * Adds to a fauxqs app, before it listens, the S3 behaviours the replicator relies on that
 * fauxqs 1.9 lacks, each the way Amazon S3 does it:
 * - signed requests must use a configured access key id (`InvalidAccessKeyId`); signatures
 *   themselves are not verified, and anonymous requests are let through;
 * - conditional writes: PutObject, CompleteMultipartUpload and CopyObject honour
 *   `If-None-Match: *` and `If-Match`, DeleteObject honours `If-Match`; every write to a key
 *   is serialised with the check (412 `PreconditionFailed`; 404 `NoSuchKey` for `If-Match` on
 *   a missing key, as S3 answers);
 * - HeadObject honours `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`;
 *   CopyObject honours `x-amz-copy-source-if-*`;
 * - `Content-Encoding`, `Content-Language`, `Content-Disposition`, `Cache-Control` and
 *   `Expires` given on PutObject or CreateMultipartUpload are returned by HEAD and GET (ranged
 *   too), and kept (or replaced) by CopyObject; GetObject's `response-*` overrides;
 * - ListParts (with `max-parts` / `part-number-marker` paging) and ListMultipartUploads
 *   (with each upload's `Initiator`, the access key that started it as an IAM user's ARN);
 *   `NoSuchUpload` for an upload id that is unknown or belongs to another key;
 * - `Content-MD5` and `x-amz-checksum-crc32` / `-crc32c` / `-sha1` / `-sha256` (header or
 *   aws-chunked trailer) are verified before anything is stored (400 `BadDigest`), and echoed;
 * - CompleteMultipartUpload checks each part's `ChecksumCRC32` and `x-amz-mp-object-size`
 *   (400 `InvalidRequest`);
 * - an error this layer answers for a bucket that does not exist is `NoSuchBucket`;
 * - objects whose Content-Type is a form or JSON-protocol type are stored like any other;
 * - a multipart object is dated from its CreateMultipartUpload, as S3 dates it;
 * - versioning (see S3Versions): Put/GetBucketVersioning, `x-amz-version-id` on writes and
 *   reads, `?versionId=` on GET, HEAD and DELETE, delete markers, ListObjectVersions.
 *
 * `store` must be the S3 store the app was built with (`buildApp({ stores })`).
 */
export function installS3Fidelity(
  app: FastifyInstance,
  options: {
    store: FauxqsS3Store;
    accessKeyId?: string | readonly string[];
    /** Sees every response before it is sent (one onSend hook: a second one races fauxqs). */
    observeSend?: (request: FastifyRequest, reply: FastifyReply, payload: unknown) => void;
  },
): void {
  const allowedKeys =
    options.accessKeyId === undefined
      ? undefined
      : new Set(
          typeof options.accessKeyId === 'string' ? [options.accessKeyId] : options.accessKeyId,
        );
  const versions = new S3Versions(options.store);
  const knownMd5 = new WeakMap<Buffer, string>();
  hashOnce(options.store, knownMd5);
  const properties = new Map<string, KeptProperties>();
  const uploads = new Map<string, UploadRecord>();
  const locks = new KeyLocks();
  const objectId = (bucket: string, key: string) => `${bucket}\n${key}`;
  /** The headers kept beside `object`, if they are still its own. */
  const keptOf = (bucket: string, key: string) => (object: FauxqsObject) => {
    const kept = properties.get(objectId(bucket, key));
    return kept && kept.etag === object.etag ? { ...kept.headers } : {};
  };
  const objectPath = (bucket: string, key: string) =>
    `/${encodeURIComponent(bucket)}/${key.split('/').map(encodeURIComponent).join('/')}`;

  const headObject = async (
    bucket: string,
    key: string,
  ): Promise<{ etag: string; lastModified: Date } | undefined> => {
    const response = await app.inject({ method: 'HEAD', url: objectPath(bucket, key) });
    const etag = response.headers.etag;
    if (response.statusCode !== 200 || typeof etag !== 'string') return undefined;
    const modified = response.headers['last-modified'];
    return { etag, lastModified: new Date(typeof modified === 'string' ? modified : 0) };
  };

  const bucketExists = async (bucket: string): Promise<boolean> => {
    const response = await app.inject({ method: 'HEAD', url: `/${encodeURIComponent(bucket)}` });
    return response.statusCode === 200;
  };

  /** Answers an error of this layer; S3 reports a missing bucket before anything else. */
  const fail = async (
    bucket: string,
    reply: FastifyReply,
    status: number,
    code: string,
    message: string,
  ): Promise<FastifyReply> => {
    if (!(await bucketExists(bucket))) {
      return s3Error(reply, 404, 'NoSuchBucket', 'The specified bucket does not exist');
    }
    return s3Error(reply, status, code, message);
  };

  const listParts = (request: FastifyRequest, reply: FastifyReply, upload: UploadRecord) => {
    const query = queryOf(request);
    const maxParts = Math.min(Math.max(Number(query['max-parts'] ?? 1000) || 1000, 0), 1000);
    const marker = Number(query['part-number-marker'] ?? 0) || 0;
    const all = [...upload.parts.entries()]
      .filter(([number]) => number > marker)
      .sort(([a], [b]) => a - b);
    const page = all.slice(0, maxParts);
    const truncated = all.length > page.length;
    const withCrc = upload.checksumAlgorithm === 'CRC32';
    const parts = page
      .map(
        ([number, part]) =>
          `<Part><PartNumber>${number}</PartNumber><LastModified>${part.lastModified.toISOString()}</LastModified><ETag>${escapeXml(part.etag)}</ETag><Size>${part.size}</Size>${withCrc || part.crc32Sent ? `<ChecksumCRC32>${part.crc32}</ChecksumCRC32>` : ''}</Part>`,
      )
      .join('');
    const next = page.at(-1)?.[0] ?? marker;
    reply.header('content-type', 'application/xml');
    return reply
      .status(200)
      .send(
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${escapeXml(upload.bucket)}</Bucket><Key>${escapeXml(upload.key)}</Key><UploadId>${escapeXml(query.uploadId ?? '')}</UploadId><StorageClass>STANDARD</StorageClass><PartNumberMarker>${marker}</PartNumberMarker><NextPartNumberMarker>${next}</NextPartNumberMarker><MaxParts>${maxParts}</MaxParts><IsTruncated>${truncated}</IsTruncated>${upload.checksumAlgorithm ? `<ChecksumAlgorithm>${escapeXml(upload.checksumAlgorithm)}</ChecksumAlgorithm>` : ''}${parts}</ListPartsResult>`,
      );
  };

  const listUploads = (request: FastifyRequest, reply: FastifyReply, bucket: string) => {
    const prefix = queryOf(request).prefix ?? '';
    const entries = [...uploads.entries()]
      .filter(([, upload]) => upload.bucket === bucket && upload.key.startsWith(prefix))
      .sort(([, a], [, b]) => a.key.localeCompare(b.key))
      .map(
        ([id, upload]) =>
          `<Upload><Key>${escapeXml(upload.key)}</Key><UploadId>${escapeXml(id)}</UploadId>${initiatorXml(upload.initiator)}<StorageClass>STANDARD</StorageClass><Initiated>${upload.initiated.toISOString()}</Initiated>${upload.checksumAlgorithm ? `<ChecksumAlgorithm>${escapeXml(upload.checksumAlgorithm)}</ChecksumAlgorithm>` : ''}</Upload>`,
      )
      .join('');
    reply.header('content-type', 'application/xml');
    return reply
      .status(200)
      .send(
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${escapeXml(bucket)}</Bucket><Prefix>${escapeXml(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${entries}</ListMultipartUploadsResult>`,
      );
  };

  /** PutBucketVersioning, GetBucketVersioning, ListObjectVersions, and what versions refuse. */
  const bucketRequest = async (
    request: FastifyRequest,
    reply: FastifyReply,
    bucket: string,
  ): Promise<FastifyReply | undefined> => {
    const query = queryOf(request);
    const versioning = 'versioning' in query;
    const listing = request.method === 'GET' && 'versions' in query;
    if (versioning || listing) {
      if (!(await bucketExists(bucket))) {
        return s3Error(reply, 404, 'NoSuchBucket', 'The specified bucket does not exist');
      }
      reply.header('content-type', 'application/xml');
      if (listing) return reply.status(200).send(versions.listXml(bucket, query.prefix ?? ''));
      if (request.method === 'GET')
        return reply.status(200).send(versions.configurationXml(bucket));
      if (request.method === 'PUT') {
        const status = /<Status>\s*(Enabled|Suspended)\s*<\/Status>/.exec(
          await readBody(request),
        )?.[1];
        if (status !== 'Enabled' && status !== 'Suspended') {
          return s3Error(
            reply,
            400,
            'MalformedXML',
            'The XML you provided was not well-formed or did not validate against our published schema',
          );
        }
        versions.setStatus(bucket, status);
        return reply.status(200).send('');
      }
    }
    if (request.method === 'POST' && 'delete' in query && versions.status(bucket)) {
      // fauxqs would remove the current objects for good, under the versions kept here.
      return s3Error(
        reply,
        501,
        'NotImplemented',
        'DeleteObjects is not implemented here on a bucket with versioning; use DeleteObject.',
      );
    }
    if (request.method === 'DELETE' && versions.hasVersions(bucket)) {
      return s3Error(
        reply,
        409,
        'BucketNotEmpty',
        'The bucket you tried to delete is not empty. You must delete all versions in the bucket.',
      );
    }
    return undefined;
  };

  app.addHook('onRequest', async (request, reply) => {
    if (allowedKeys !== undefined) {
      const accessKey = requestAccessKey(request);
      if (accessKey !== undefined && !allowedKeys.has(accessKey)) {
        return s3Error(
          reply,
          403,
          'InvalidAccessKeyId',
          'The AWS Access Key Id you provided does not exist in our records.',
        );
      }
    }
    const params = request.params as { bucket?: string; '*'?: string } | undefined;
    if (
      request.method === 'GET' &&
      params?.bucket &&
      !params['*'] &&
      'uploads' in queryOf(request)
    ) {
      if (!(await bucketExists(params.bucket))) {
        return s3Error(reply, 404, 'NoSuchBucket', 'The specified bucket does not exist');
      }
      return listUploads(request, reply, params.bucket);
    }
    if (params?.bucket && !params['*']) {
      const answered = await bucketRequest(request, reply, params.bucket);
      if (answered) return answered;
    }
    const current = classify(request);
    if (!current) return;
    state.set(request, current);
    const contentType = header(request, 'content-type');
    if (contentType && /x-www-form-urlencoded|x-amz-json/i.test(contentType)) {
      // fauxqs parses these types as SNS/SQS calls; S3 stores an object of any type.
      current.contentType = contentType;
      request.headers['content-type'] = 'application/octet-stream';
    }
    const { operation, bucket, key, uploadId } = current;
    if (operation === 'UploadPartCopy') {
      return s3Error(reply, 501, 'NotImplemented', 'UploadPartCopy is not implemented here.');
    }
    if (uploadId !== undefined) {
      const upload = uploads.get(uploadId);
      if (!upload || upload.bucket !== bucket || upload.key !== key) {
        return fail(
          bucket,
          reply,
          404,
          'NoSuchUpload',
          'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
        );
      }
      if (operation === 'ListParts') return listParts(request, reply, upload);
      if (operation === 'UploadPart') {
        const partNumber = Number(queryOf(request).partNumber);
        if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PART_NUMBER) {
          return s3Error(
            reply,
            400,
            'InvalidArgument',
            `Part number must be an integer between 1 and ${MAX_PART_NUMBER}, inclusive`,
          );
        }
      }
    }
  });

  app.addHook('preHandler', async (request, reply) => {
    const current = state.get(request);
    if (!current) return;
    if (current.contentType !== undefined) request.headers['content-type'] = current.contentType;
    const { operation, bucket, key } = current;

    if (operation === 'PutObject' || operation === 'UploadPart') {
      const checked = checkBody(request);
      if (!checked.ok) return fail(bucket, reply, checked.status, checked.code, checked.message);
      current.checksums = checked.checksums;
      // fauxqs stores the decoded bytes as they are (it would decode them again) and, when
      // their MD5 is known, with that MD5 (see hashOnce).
      if (checked.body !== request.body) {
        request.body = checked.body;
        const encoding = keptHeaders(request, ['content-encoding'])['content-encoding'];
        if (encoding === undefined) delete request.headers['content-encoding'];
        else request.headers['content-encoding'] = encoding;
      }
      if (checked.md5 !== undefined) knownMd5.set(checked.body, checked.md5);
      const sent = checked.checksums.find(([name]) => name === 'x-amz-checksum-crc32')?.[1];
      current.part = {
        size: checked.body.length,
        // A CRC32 that was sent has just been verified; only compute one that was not.
        crc32: sent ?? checksumOf('crc32', checked.body),
        crc32Sent: sent !== undefined,
      };
    }

    if (operation === 'CompleteMultipartUpload') {
      const upload = uploads.get(current.uploadId ?? '');
      if (!upload) {
        return s3Error(reply, 404, 'NoSuchUpload', 'The specified upload does not exist.');
      }
      const parts = parseCompletedParts(
        Buffer.isBuffer(request.body) ? request.body.toString('utf8') : '',
      );
      if (parts.length === 0) {
        return s3Error(
          reply,
          400,
          'MalformedXML',
          'The XML you provided was not well-formed or did not validate against our published schema',
        );
      }
      // S3 takes a Part's elements in any order and any XML escaping (Go clients send ETag
      // first, and &#34; for quotes); fauxqs reads one form, so it gets that form.
      request.body = Buffer.from(
        `<CompleteMultipartUpload>${parts.map((part) => `<Part><PartNumber>${part.partNumber}</PartNumber><ETag>${escapeXml(part.etag)}</ETag></Part>`).join('')}</CompleteMultipartUpload>`,
      );
      // S3 checks each part's checksum in the commit against what the part was uploaded with.
      const wrongChecksum = parts.find(
        (part) =>
          part.crc32 !== undefined && upload.parts.get(part.partNumber)?.crc32 !== part.crc32,
      );
      if (wrongChecksum) {
        return s3Error(
          reply,
          400,
          'InvalidPart',
          `One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part ${wrongChecksum.partNumber}: checksum)`,
        );
      }
      const expected = header(request, 'x-amz-mp-object-size');
      if (expected !== undefined) {
        const total = parts.reduce(
          (sum, part) => sum + (upload.parts.get(part.partNumber)?.size ?? 0),
          0,
        );
        if (!/^\d+$/.test(expected) || total !== Number(expected)) {
          return s3Error(
            reply,
            400,
            'InvalidRequest',
            `The provided 'x-amz-mp-object-size' header value ${expected} does not match what was computed: ${total}`,
          );
        }
      }
    }

    if (operation === 'CopyObject') {
      const rawSource = header(request, 'x-amz-copy-source') ?? '';
      const source = parseCopySource(rawSource);
      if (!source) {
        return s3Error(reply, 400, 'InvalidArgument', 'Invalid copy source object key');
      }
      // fauxqs reads the whole header as bucket/key; a version id is not part of the key.
      request.headers['x-amz-copy-source'] = rawSource.split('?')[0] ?? rawSource;
      const conditions = {
        ifMatch: header(request, 'x-amz-copy-source-if-match'),
        ifNoneMatch: header(request, 'x-amz-copy-source-if-none-match'),
        ifModifiedSince: header(request, 'x-amz-copy-source-if-modified-since'),
        ifUnmodifiedSince: header(request, 'x-amz-copy-source-if-unmodified-since'),
      };
      if (Object.values(conditions).some((value) => value !== undefined)) {
        const head = await headObject(source.bucket, source.key);
        if (head && evaluateReadConditions(conditions, head.etag, head.lastModified, 412)) {
          return s3Error(reply, 412, 'PreconditionFailed', PRECONDITION_FAILED);
        }
      }
    }

    const versionId = queryOf(request).versionId;
    const versioned = versions.status(bucket) !== undefined;
    if ((operation === 'GetObject' || operation === 'HeadObject') && versioned && versionId) {
      versions.seed(bucket, key, keptOf(bucket, key));
      const entry = versions.find(bucket, key, versionId);
      if (!entry) {
        return fail(bucket, reply, 404, 'NoSuchVersion', 'The specified version does not exist.');
      }
      if (entry.deleteMarker) {
        // https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeleteMarker.html
        reply.header('x-amz-delete-marker', 'true');
        reply.header('x-amz-version-id', entry.versionId);
        reply.header('last-modified', entry.lastModified.toUTCString());
        return s3Error(
          reply,
          405,
          'MethodNotAllowed',
          'The specified method is not allowed against this resource.',
        );
      }
      // The current version is fauxqs's object; an older one only this layer has.
      if (entry !== versions.current(bucket, key)) {
        current.served = true;
        return serveVersion(request, reply, entry, operation);
      }
    }

    const writes =
      operation === 'PutObject' ||
      operation === 'CompleteMultipartUpload' ||
      operation === 'CopyObject' ||
      operation === 'DeleteObject';
    if (!writes) return;
    // Every write to the key waits for the one before, so no write lands between a
    // conditional write's check and its own write.
    const release = await locks.acquire(objectId(bucket, key));
    current.release = release;
    // 'close' comes after 'finish', and also when the client goes away before the answer.
    reply.raw.once('close', release);
    if (versioned) {
      // The object stored before versioning was set becomes the null version before it changes.
      versions.seed(bucket, key, keptOf(bucket, key));
      if (operation === 'DeleteObject' && versionId !== undefined) {
        // A version is removed for good; fauxqs holds the current one, so this layer answers.
        // https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeletingObjectVersions.html
        const deletion = versions.deleteVersion(bucket, key, versionId);
        if (deletion.wasCurrent) {
          const now = deletion.current;
          if (now && !now.deleteMarker) {
            properties.set(objectId(bucket, key), { etag: now.object.etag, headers: now.headers });
          } else {
            properties.delete(objectId(bucket, key));
          }
        }
        current.served = true;
        reply.header('x-amz-version-id', versionId);
        if (deletion.deleteMarker) reply.header('x-amz-delete-marker', 'true');
        return reply.code(204).send();
      }
    }
    const ifMatch = header(request, 'if-match');
    const ifNoneMatch = operation === 'DeleteObject' ? undefined : header(request, 'if-none-match');
    if (ifMatch === undefined && ifNoneMatch === undefined) return;
    if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== '*') {
      return s3Error(
        reply,
        501,
        'NotImplemented',
        'A header you provided implies functionality that is not implemented',
      );
    }
    const head = await headObject(bucket, key);
    if (ifNoneMatch !== undefined && head !== undefined) {
      return s3Error(reply, 412, 'PreconditionFailed', PRECONDITION_FAILED);
    }
    if (ifMatch !== undefined) {
      if (head === undefined) {
        return fail(bucket, reply, 404, 'NoSuchKey', 'The specified key does not exist.');
      }
      if (!etagMatches(ifMatch, head.etag)) {
        return s3Error(reply, 412, 'PreconditionFailed', PRECONDITION_FAILED);
      }
    }
  });

  app.addHook('onSend', async (request, reply, payload) => {
    options.observeSend?.(request, reply, payload);
    const current = state.get(request);
    if (!current) {
      const params = request.params as { bucket?: string; '*'?: string } | undefined;
      if (request.method === 'DELETE' && params?.bucket && !params['*']) {
        if (reply.statusCode === 204) versions.dropBucket(params.bucket);
      }
      return payload;
    }
    const ok = reply.statusCode >= 200 && reply.statusCode < 300;
    const id = objectId(current.bucket, current.key);
    const etagHeader = reply.getHeader('etag');
    const etag = typeof etagHeader === 'string' ? etagHeader : undefined;
    const resultEtag = () =>
      typeof payload === 'string'
        ? /<ETag>([^<]+)<\/ETag>/.exec(payload)?.[1]?.replaceAll('&quot;', '"')
        : undefined;
    switch (current.operation) {
      case 'PutObject':
        if (ok && etag) {
          properties.set(id, { etag, headers: keptHeaders(request, KEPT_HEADERS) });
          for (const [name, value] of current.checksums ?? []) reply.header(name, value);
        }
        break;
      case 'CopyObject': {
        const newEtag = ok ? resultEtag() : undefined;
        if (!newEtag) break;
        const source = parseCopySource(header(request, 'x-amz-copy-source') ?? '');
        const kept = source && properties.get(objectId(source.bucket, source.key));
        const replace = header(request, 'x-amz-metadata-directive') === 'REPLACE';
        properties.set(id, {
          etag: newEtag,
          // fauxqs keeps the source's Content-Type even under REPLACE; S3 takes the request's.
          headers: replace
            ? keptHeaders(request, [...KEPT_HEADERS, 'content-type'])
            : { ...kept?.headers },
        });
        break;
      }
      case 'CreateMultipartUpload': {
        if (!ok || typeof payload !== 'string') break;
        const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(payload)?.[1];
        const algorithm = header(request, 'x-amz-checksum-algorithm')?.toUpperCase();
        const initiator = requestAccessKey(request);
        if (uploadId) {
          uploads.set(uploadId, {
            bucket: current.bucket,
            key: current.key,
            headers: keptHeaders(request, KEPT_HEADERS),
            initiated: new Date(),
            ...(algorithm !== undefined && { checksumAlgorithm: algorithm }),
            ...(initiator !== undefined && { initiator }),
            parts: new Map(),
          });
        }
        if (algorithm !== undefined) reply.header('x-amz-checksum-algorithm', algorithm);
        break;
      }
      case 'UploadPart': {
        const upload = uploads.get(current.uploadId ?? '');
        if (ok && upload && etag && current.part) {
          upload.parts.set(Number(queryOf(request).partNumber), {
            etag,
            lastModified: new Date(),
            ...current.part,
          });
          for (const [name, value] of current.checksums ?? []) reply.header(name, value);
        }
        break;
      }
      case 'CompleteMultipartUpload': {
        const upload = uploads.get(current.uploadId ?? '');
        if (!ok || !upload) break;
        const newEtag = resultEtag();
        if (newEtag) properties.set(id, { etag: newEtag, headers: upload.headers });
        // S3 dates a multipart object from the start of its upload, not from its completion.
        // https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html
        const object = versions.currentObject(current.bucket, current.key);
        if (object && object.etag === newEtag) object.lastModified = upload.initiated;
        uploads.delete(current.uploadId ?? '');
        break;
      }
      case 'AbortMultipartUpload':
        if (ok) uploads.delete(current.uploadId ?? '');
        break;
      case 'DeleteObject':
        // A version delete has set what is kept for the version now current.
        if (ok && !current.served) properties.delete(id);
        break;
      case 'GetObject':
      case 'HeadObject': {
        if (!ok || !etag) break;
        if (current.served) {
          if (current.operation === 'GetObject') applyResponseOverrides(request, reply);
          break;
        }
        const kept = properties.get(id);
        if (kept && etag === kept.etag) {
          for (const [name, value] of Object.entries(kept.headers)) reply.header(name, value);
        }
        reply.header('accept-ranges', 'bytes');
        if (current.operation === 'GetObject') {
          applyResponseOverrides(request, reply);
          break;
        }
        const modified = reply.getHeader('last-modified');
        const failed = evaluateReadConditions(
          {
            ifMatch: header(request, 'if-match'),
            ifNoneMatch: header(request, 'if-none-match'),
            ifModifiedSince: header(request, 'if-modified-since'),
            ifUnmodifiedSince: header(request, 'if-unmodified-since'),
          },
          etag,
          new Date(typeof modified === 'string' ? modified : 0),
          304,
        );
        if (failed !== undefined) reply.code(failed);
        break;
      }
      default:
        break;
    }
    if (versions.status(current.bucket) !== undefined && !current.served) {
      recordVersion(current, reply, ok);
    }
    return payload;
  });

  /** Dates, records and names the version a request on a versioned bucket made or read. */
  const recordVersion = (current: RequestState, reply: FastifyReply, ok: boolean) => {
    const { bucket, key, operation } = current;
    switch (operation) {
      case 'PutObject':
      case 'CopyObject':
      case 'CompleteMultipartUpload': {
        const object = versions.currentObject(bucket, key);
        if (!ok || !object) break;
        const versionId = versions.recordWrite(bucket, key, object, keptOf(bucket, key)(object));
        if (versionId !== 'null') reply.header('x-amz-version-id', versionId);
        break;
      }
      case 'DeleteObject':
        if (!ok) break;
        reply.header('x-amz-delete-marker', 'true');
        reply.header('x-amz-version-id', versions.recordDeleteMarker(bucket, key));
        break;
      case 'GetObject':
      case 'HeadObject': {
        const latest = versions.current(bucket, key);
        if (ok) {
          reply.header('x-amz-version-id', latest?.versionId ?? 'null');
        } else if (reply.statusCode === 404 && latest?.deleteMarker) {
          // https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeleteMarker.html
          reply.header('x-amz-delete-marker', 'true');
          reply.header('x-amz-version-id', latest.versionId);
        }
        break;
      }
      default:
        break;
    }
  };

  app.addHook('onResponse', async (request) => {
    state.get(request)?.release?.();
  });
}

function applyResponseOverrides(request: FastifyRequest, reply: FastifyReply): void {
  const query = queryOf(request);
  for (const [parameter, name] of Object.entries(RESPONSE_OVERRIDES)) {
    const value = query[parameter];
    if (value !== undefined) reply.header(name, value);
  }
}

/** Starts fauxqs with the S3 fidelity hooks on `options.port` (0 for any free port). */
export async function startS3Emulator(options: S3EmulatorOptions = {}): Promise<RunningS3Emulator> {
  const host = options.host ?? '127.0.0.1';
  const store = await createFauxqsS3Store();
  listInS3Order(store);
  await pollLikeSqs();
  const app = buildApp({
    logger: false,
    host,
    ...(options.region && { defaultRegion: options.region }),
    // fauxqs builds the stores it is not given.
    stores: { s3Store: store } as unknown as NonNullable<BuildAppOptions['stores']>,
  });
  const notifications = installS3Notifications(app, { region: options.region ?? 'us-east-1' });
  installS3Fidelity(app, {
    store,
    ...(options.accessKeyId !== undefined && { accessKeyId: options.accessKeyId }),
    observeSend: notifications.observeSend,
  });
  await app.listen({ port: options.port ?? 0, host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 0);
  return {
    port,
    endpoint: `http://${host}:${port}`,
    app,
    close: () => app.close(),
  };
}
