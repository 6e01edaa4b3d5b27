import { createHash } from 'node:crypto';
import type { FauxqsObject } from './s3-versioning.ts';

/** A part of a multipart upload as fauxqs 1.9 keeps it. */
type StoredPart = { partNumber: number; body: Buffer; etag: string; lastModified: Date };

/** The parts of fauxqs 1.9's `S3Store` that compute an MD5 this layer may already know. */
interface DigestingStore {
  buckets: Map<string, Map<string, FauxqsObject>>;
  multipartUploads: Map<
    string,
    {
      bucket: string;
      key: string;
      contentType: string;
      metadata: Record<string, string>;
      parts: Map<number, StoredPart>;
    }
  >;
  multipartUploadsByBucket: Map<string, Set<string>>;
  spy?: unknown;
  putObject(
    bucket: string,
    key: string,
    body: Buffer,
    contentType?: string,
    metadata?: Record<string, string>,
  ): FauxqsObject;
  uploadPart(uploadId: string, partNumber: number, body: Buffer): string;
  completeMultipartUpload(
    uploadId: string,
    parts: Array<{ partNumber: number; etag: string }>,
  ): FauxqsObject;
}

/** S3's smallest part but the last, checked at CompleteMultipartUpload. */
const MIN_PART_BYTES = 5 * 1024 * 1024;

/**
 * The parts `specs` names, in its order, when S3 would complete them as named (ascending part
 * numbers, each part there with that ETag, an MD5 ETag, all but the last of 5 MiB or more);
 * otherwise undefined.
 */
function partsToComplete(
  stored: Map<number, StoredPart>,
  specs: Array<{ partNumber: number; etag: string }>,
): StoredPart[] | undefined {
  if (specs.length === 0) return undefined;
  const parts: StoredPart[] = [];
  let previous = 0;
  for (const [index, spec] of specs.entries()) {
    const part = stored.get(spec.partNumber);
    if (
      !part ||
      spec.partNumber <= previous ||
      part.etag.replaceAll('"', '') !== spec.etag.replaceAll('"', '') ||
      !/^"?[0-9a-f]{32}"?$/.test(part.etag) ||
      (index < specs.length - 1 && part.body.length < MIN_PART_BYTES)
    ) {
      return undefined;
    }
    previous = spec.partNumber;
    parts.push(part);
  }
  return parts;
}

function isDigestingStore(store: object): store is DigestingStore {
  const candidate = store as Partial<DigestingStore>;
  return (
    candidate.buckets instanceof Map &&
    candidate.multipartUploads instanceof Map &&
    candidate.multipartUploadsByBucket instanceof Map &&
    typeof candidate.putObject === 'function' &&
    typeof candidate.uploadPart === 'function' &&
    typeof candidate.completeMultipartUpload === 'function'
  );
}

/**
 * Makes fauxqs hash each stored byte once, as S3 does. fauxqs 1.9 computes the MD5 of an
 * object or part that this layer has just verified against its Content-MD5, and at
 * CompleteMultipartUpload computes every part's MD5 again from its bytes, where S3 takes the
 * MD5s it computed when the parts arrived (a multipart ETag is the MD5 of the parts' MD5s).
 * That doubled the emulator's CPU per byte, a cost the cloud does not have and that bounded
 * every client's speed here alike. A body listed in `knownMd5` (hex, verified) is stored with
 * that MD5; a completion takes each part's MD5 from its ETag. Anything else, and every error,
 * goes to fauxqs's own methods, so they answer as before.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
 */
export function hashOnce(store: object, knownMd5: WeakMap<Buffer, string>): void {
  if (!isDigestingStore(store)) {
    throw new Error(
      'fauxqs S3Store lacks the multipart maps; this emulator is written for fauxqs 1.9',
    );
  }
  const putObject = store.putObject.bind(store);
  const uploadPart = store.uploadPart.bind(store);
  const complete = store.completeMultipartUpload.bind(store);

  store.putObject = (bucket, key, body, contentType, metadata) => {
    const md5 = knownMd5.get(body);
    const objects = store.buckets.get(bucket);
    if (md5 === undefined || !objects || store.spy) {
      return putObject(bucket, key, body, contentType, metadata);
    }
    const object: FauxqsObject = {
      key,
      body,
      contentType: contentType ?? 'application/octet-stream',
      contentLength: body.length,
      etag: `"${md5}"`,
      lastModified: new Date(),
      metadata: metadata ?? {},
    };
    objects.set(key, object);
    return object;
  };

  store.uploadPart = (uploadId, partNumber, body) => {
    const md5 = knownMd5.get(body);
    const upload = store.multipartUploads.get(uploadId);
    if (md5 === undefined || !upload) return uploadPart(uploadId, partNumber, body);
    const etag = `"${md5}"`;
    upload.parts.set(partNumber, { partNumber, body, etag, lastModified: new Date() });
    return etag;
  };

  store.completeMultipartUpload = (uploadId, specs) => {
    const upload = store.multipartUploads.get(uploadId);
    const objects = upload && store.buckets.get(upload.bucket);
    const parts = upload && !store.spy ? partsToComplete(upload.parts, specs) : undefined;
    // fauxqs answers whatever is wrong (order, a missing part, an ETag, a small part) itself.
    if (!upload || !objects || !parts) return complete(uploadId, specs);
    const bodies = parts.map((part) => part.body);
    const digests = parts.map((part) => Buffer.from(part.etag.replaceAll('"', ''), 'hex'));
    const md5 = createHash('md5').update(Buffer.concat(digests)).digest('hex');
    const body = Buffer.concat(bodies);
    const object: FauxqsObject = {
      key: upload.key,
      body,
      contentType: upload.contentType,
      contentLength: body.length,
      etag: `"${md5}-${specs.length}"`,
      lastModified: new Date(),
      metadata: upload.metadata,
    };
    objects.set(upload.key, object);
    store.multipartUploads.delete(uploadId);
    store.multipartUploadsByBucket.get(upload.bucket)?.delete(uploadId);
    return object;
  };
}
