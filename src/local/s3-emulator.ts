import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { buildApp } from 'fauxqs';
import { decodeAwsChunked } from './aws-chunked.ts';

/**
 * The local S3 (and SQS) endpoint: fauxqs, plus the S3 behaviours the replicator relies on
 * that fauxqs 1.9 lacks, each done the way Amazon S3 does it:
 * - the access key id of signed requests must be the configured one (`InvalidAccessKeyId`);
 * - conditional writes: PutObject and CompleteMultipartUpload honour `If-None-Match: *` and
 *   `If-Match`, serialised per key (412 `PreconditionFailed`; 404 `NoSuchKey` for If-Match on
 *   a missing key);
 * - `Content-Encoding`, `Content-Language`, `Content-Disposition`, `Cache-Control` and
 *   `Expires` are kept and returned by HEAD and GET, and by CopyObject;
 * - ListParts;
 * - `Content-MD5` and `x-amz-checksum-crc32` (header or aws-chunked trailer) are verified
 *   (400 `BadDigest`, nothing stored);
 * - `x-amz-mp-object-size` is checked on CompleteMultipartUpload (400 `InvalidRequest`).
 * Signatures themselves are not verified; anonymous requests are let through.
 */
export interface S3EmulatorOptions {
  port?: number;
  host?: string;
  region?: string;
  /** When set, signed requests must use this access key id. */
  accessKeyId?: string;
}

export interface RunningS3Emulator {
  port: number;
  endpoint: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

const KEPT_HEADERS = [
  'content-encoding',
  'content-language',
  'content-disposition',
  'cache-control',
  'expires',
] as const;

interface KeptProperties {
  etag: string;
  headers: Record<string, string>;
}

interface UploadRecord {
  bucket: string;
  key: string;
  headers: Record<string, string>;
  parts: Map<number, { etag: string; size: number; lastModified: Date; crc32?: string }>;
}

type Operation =
  | 'PutObject'
  | 'CopyObject'
  | 'UploadPart'
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
  partSize?: number;
  release?: () => void;
}

const state = new WeakMap<FastifyRequest, RequestState>();

function s3Error(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  reply.header('content-type', 'application/xml');
  reply.header('x-amz-error-code', code);
  return reply
    .status(status)
    .send(
      `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`,
    );
}

function noSuchUpload(reply: FastifyReply): FastifyReply {
  return s3Error(reply, 404, 'NoSuchUpload', 'The specified multipart upload does not exist.');
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function classify(request: FastifyRequest): RequestState | undefined {
  const params = request.params as { bucket?: string; '*'?: string } | undefined;
  const bucket = params?.bucket;
  const key = params?.['*'];
  if (!bucket || !key) return undefined;
  const query = (request.query ?? {}) as Record<string, string | undefined>;
  const uploadId = query.uploadId;
  const base = { bucket, key, ...(uploadId !== undefined && { uploadId }) };
  switch (request.method) {
    case 'PUT':
      if (uploadId !== undefined && query.partNumber !== undefined) {
        return { ...base, operation: 'UploadPart' };
      }
      return {
        ...base,
        operation: header(request, 'x-amz-copy-source') ? 'CopyObject' : 'PutObject',
      };
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

function keptHeaders(request: FastifyRequest): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const name of KEPT_HEADERS) {
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

function accessKeyOf(request: FastifyRequest): string | undefined {
  const authorization = header(request, 'authorization');
  const fromHeader = authorization ? /Credential=([^/,\s]+)\//.exec(authorization)?.[1] : undefined;
  if (fromHeader) return fromHeader;
  const query = (request.query ?? {}) as Record<string, string | undefined>;
  return query['X-Amz-Credential']?.split('/')[0];
}

function checksumOf(request: FastifyRequest): { crc32?: string } {
  const crc32 = header(request, 'x-amz-checksum-crc32');
  return crc32 === undefined ? {} : { crc32 };
}

function decodeXml(text: string): string {
  return text.replace(
    /&(quot|amp|lt|gt|apos|#(\d+)|#x([0-9a-fA-F]+));/g,
    (entity, name: string, dec?: string, hex?: string) => {
      if (dec) return String.fromCharCode(Number(dec));
      if (hex) return String.fromCharCode(Number.parseInt(hex, 16));
      return (
        ({ quot: '"', amp: '&', lt: '<', gt: '>', apos: "'" } as Record<string, string>)[name] ??
        entity
      );
    },
  );
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

/** Per-key lock so a conditional check and its write cannot interleave with another's. */
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
    return () => {
      release();
      if (this.#tails.get(id) === tail) this.#tails.delete(id);
    };
  }
}

function verifyDigests(
  request: FastifyRequest,
  reply: FastifyReply,
  raw: Buffer,
): Buffer | undefined {
  let body = raw;
  let trailers: Record<string, string> = {};
  if ((header(request, 'content-encoding') ?? '').includes('aws-chunked')) {
    const decoded = decodeAwsChunked(raw);
    if (!decoded) {
      s3Error(reply, 400, 'IncompleteBody', 'The aws-chunked body is not well formed.');
      return undefined;
    }
    body = decoded.data;
    trailers = decoded.trailers;
  }
  const md5 = header(request, 'content-md5');
  if (md5 !== undefined && createHash('md5').update(body).digest('base64') !== md5) {
    s3Error(
      reply,
      400,
      'BadDigest',
      'The Content-MD5 you specified did not match what we received.',
    );
    return undefined;
  }
  const crc = header(request, 'x-amz-checksum-crc32') ?? trailers['x-amz-checksum-crc32'];
  if (crc !== undefined) {
    const actual = Buffer.alloc(4);
    actual.writeUInt32BE(crc32(body));
    if (actual.toString('base64') !== crc) {
      s3Error(
        reply,
        400,
        'BadDigest',
        'The CRC32 you specified did not match the calculated checksum.',
      );
      return undefined;
    }
  }
  return body;
}

/** Adds the S3 behaviours listed above to a fauxqs app, before it listens. */
export function installS3Fidelity(
  app: FastifyInstance,
  options: { accessKeyId?: string } = {},
): void {
  const properties = new Map<string, KeptProperties>();
  const uploads = new Map<string, UploadRecord>();
  const locks = new KeyLocks();
  const objectId = (bucket: string, key: string) => `${bucket}\n${key}`;

  const currentEtag = async (bucket: string, key: string): Promise<string | undefined> => {
    const path = `/${encodeURIComponent(bucket)}/${key.split('/').map(encodeURIComponent).join('/')}`;
    const response = await app.inject({ method: 'HEAD', url: path });
    if (response.statusCode !== 200) return undefined;
    const etag = response.headers.etag;
    return typeof etag === 'string' ? etag : undefined;
  };

  app.addHook('onRequest', async (request, reply) => {
    if (options.accessKeyId !== undefined) {
      const accessKey = accessKeyOf(request);
      if (accessKey !== undefined && accessKey !== options.accessKeyId) {
        return s3Error(
          reply,
          403,
          'InvalidAccessKeyId',
          'The AWS Access Key Id you provided does not exist in our records.',
        );
      }
    }
    const current = classify(request);
    if (!current) return;
    state.set(request, current);
    if (current.uploadId !== undefined && current.operation !== 'CompleteMultipartUpload') {
      const upload = uploads.get(current.uploadId);
      if (!upload && current.operation !== 'AbortMultipartUpload') {
        return noSuchUpload(reply);
      }
    }
    if (current.operation === 'ListParts') {
      const upload = uploads.get(current.uploadId ?? '');
      if (!upload) return noSuchUpload(reply);
      const parts = [...upload.parts.entries()]
        .sort(([a], [b]) => a - b)
        .map(
          ([number, part]) =>
            `<Part><PartNumber>${number}</PartNumber><LastModified>${part.lastModified.toISOString()}</LastModified><ETag>${part.etag.replaceAll('"', '&quot;')}</ETag><Size>${part.size}</Size>${part.crc32 ? `<ChecksumCRC32>${part.crc32}</ChecksumCRC32>` : ''}</Part>`,
        )
        .join('');
      reply.header('content-type', 'application/xml');
      return reply
        .status(200)
        .send(
          `<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${current.bucket}</Bucket><UploadId>${current.uploadId}</UploadId><IsTruncated>false</IsTruncated>${parts}</ListPartsResult>`,
        );
    }
  });

  app.addHook('preHandler', async (request, reply) => {
    const current = state.get(request);
    if (!current) return;
    const { operation, bucket, key } = current;
    if (operation === 'PutObject' || operation === 'UploadPart') {
      const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const body = verifyDigests(request, reply, raw);
      if (!body) return reply;
      current.partSize = body.length;
    }
    if (operation === 'CompleteMultipartUpload') {
      const upload = uploads.get(current.uploadId ?? '');
      if (!upload) return noSuchUpload(reply);
      const parts = parseCompletedParts(
        Buffer.isBuffer(request.body) ? request.body.toString('utf8') : '',
      );
      // S3 takes a Part's elements in any order and any XML escaping (Go clients send ETag
      // first, and &#34; for quotes); fauxqs reads one form, so it gets that form.
      request.body = Buffer.from(
        `<CompleteMultipartUpload>${parts.map((part) => `<Part><PartNumber>${part.partNumber}</PartNumber><ETag>${part.etag.replaceAll('"', '&quot;')}</ETag></Part>`).join('')}</CompleteMultipartUpload>`,
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
          `The checksum of part ${wrongChecksum.partNumber} does not match the uploaded part.`,
        );
      }
      const expected = header(request, 'x-amz-mp-object-size');
      if (expected !== undefined) {
        const total = parts.reduce(
          (sum, part) => sum + (upload.parts.get(part.partNumber)?.size ?? 0),
          0,
        );
        if (total !== Number(expected)) {
          return s3Error(
            reply,
            400,
            'InvalidRequest',
            `The provided 'x-amz-mp-object-size' header value ${expected} does not match what was computed: ${total}`,
          );
        }
      }
    }
    const ifMatch = header(request, 'if-match');
    const ifNoneMatch = header(request, 'if-none-match');
    const conditional =
      operation === 'PutObject' ||
      operation === 'CompleteMultipartUpload' ||
      // S3 honours If-Match on DeleteObject too.
      (operation === 'DeleteObject' && ifMatch !== undefined);
    if (conditional && (ifMatch || ifNoneMatch)) {
      current.release = await locks.acquire(objectId(bucket, key));
      const etag = await currentEtag(bucket, key);
      if (ifNoneMatch === '*' && etag !== undefined) {
        return s3Error(
          reply,
          412,
          'PreconditionFailed',
          'At least one of the pre-conditions you specified did not hold',
        );
      }
      if (ifMatch !== undefined) {
        if (etag === undefined)
          return s3Error(reply, 404, 'NoSuchKey', 'The specified key does not exist.');
        if (ifMatch !== etag && ifMatch !== '*') {
          return s3Error(
            reply,
            412,
            'PreconditionFailed',
            'At least one of the pre-conditions you specified did not hold',
          );
        }
      }
    }
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const current = state.get(request);
    if (!current) return payload;
    const ok = reply.statusCode >= 200 && reply.statusCode < 300;
    const id = objectId(current.bucket, current.key);
    const etagHeader = reply.getHeader('etag');
    const etag = typeof etagHeader === 'string' ? etagHeader : undefined;
    switch (current.operation) {
      case 'PutObject':
        if (ok && etag) properties.set(id, { etag, headers: keptHeaders(request) });
        break;
      case 'CopyObject': {
        if (!ok || typeof payload !== 'string') break;
        const newEtag = /<ETag>([^<]+)<\/ETag>/.exec(payload)?.[1]?.replaceAll('&quot;', '"');
        if (!newEtag) break;
        const replace = header(request, 'x-amz-metadata-directive') === 'REPLACE';
        const sourcePath = decodeURIComponent(header(request, 'x-amz-copy-source') ?? '').replace(
          /^\//,
          '',
        );
        const slash = sourcePath.indexOf('/');
        const source = properties.get(
          objectId(sourcePath.slice(0, slash), sourcePath.slice(slash + 1)),
        );
        properties.set(id, {
          etag: newEtag,
          headers: replace ? keptHeaders(request) : { ...source?.headers },
        });
        break;
      }
      case 'CreateMultipartUpload': {
        if (!ok || typeof payload !== 'string') break;
        const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(payload)?.[1];
        if (uploadId) {
          uploads.set(uploadId, {
            bucket: current.bucket,
            key: current.key,
            headers: keptHeaders(request),
            parts: new Map(),
          });
        }
        break;
      }
      case 'UploadPart': {
        const upload = uploads.get(current.uploadId ?? '');
        const query = (request.query ?? {}) as Record<string, string | undefined>;
        if (ok && upload && etag) {
          upload.parts.set(Number(query.partNumber), {
            etag,
            size: current.partSize ?? 0,
            lastModified: new Date(),
            ...checksumOf(request),
          });
        }
        break;
      }
      case 'CompleteMultipartUpload': {
        const upload = uploads.get(current.uploadId ?? '');
        if (!ok || !upload || typeof payload !== 'string') break;
        const newEtag = /<ETag>([^<]+)<\/ETag>/.exec(payload)?.[1]?.replaceAll('&quot;', '"');
        if (newEtag) properties.set(id, { etag: newEtag, headers: upload.headers });
        uploads.delete(current.uploadId ?? '');
        break;
      }
      case 'AbortMultipartUpload':
        if (ok) uploads.delete(current.uploadId ?? '');
        break;
      case 'DeleteObject':
        if (ok) properties.delete(id);
        break;
      case 'GetObject':
      case 'HeadObject': {
        const kept = properties.get(id);
        if (ok && kept && etag === kept.etag) {
          for (const [name, value] of Object.entries(kept.headers)) reply.header(name, value);
        }
        break;
      }
      default:
        break;
    }
    return payload;
  });

  app.addHook('onResponse', async (request) => {
    state.get(request)?.release?.();
  });
}

/** Starts fauxqs with the S3 fidelity hooks on `port` (0 for any free port). */
export async function startS3Emulator(options: S3EmulatorOptions = {}): Promise<RunningS3Emulator> {
  const host = options.host ?? '127.0.0.1';
  const app = buildApp({
    logger: false,
    host,
    ...(options.region && { defaultRegion: options.region }),
  });
  installS3Fidelity(
    app,
    options.accessKeyId === undefined ? {} : { accessKeyId: options.accessKeyId },
  );
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
