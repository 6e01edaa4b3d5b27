/**
 * S3 refuses an aws-chunked body with a chunk below 8 KiB before the last one (403
 * `InvalidChunkSizeError`, "Only the last chunk is allowed to have a size less than 8192
 * bytes"), as seen in https://github.com/aws/aws-sdk-cpp/issues/2727 and the AWS SDK's own hint
 * to set `requestStreamBufferSize`.
 */
export const MIN_CHUNK_BYTES = 8192;

/**
 * Decodes an `aws-chunked` request body (SigV4 streaming, signed or unsigned, with optional
 * trailers such as `x-amz-checksum-crc32`). Returns `undefined` when the body is not well formed.
 */
export function decodeAwsChunked(body: Buffer):
  | {
      data: Buffer;
      trailers: Record<string, string>;
      /** The first data chunk but the last below 8 KiB (1-based), which S3 refuses. */
      smallChunk?: { chunk: number; size: number };
    }
  | undefined {
  const chunks: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', offset);
    if (lineEnd < 0) return undefined;
    const header = body.subarray(offset, lineEnd).toString('latin1');
    const size = Number.parseInt(header.split(';')[0] ?? '', 16);
    if (!Number.isInteger(size) || size < 0) return undefined;
    offset = lineEnd + 2;
    if (size === 0) break;
    if (offset + size > body.length) return undefined;
    chunks.push(body.subarray(offset, offset + size));
    offset += size + 2;
  }
  const trailers: Record<string, string> = {};
  for (const line of body.subarray(offset).toString('latin1').split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0)
      trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const small = chunks.findIndex(
    (chunk, index) => index < chunks.length - 1 && chunk.length < MIN_CHUNK_BYTES,
  );
  return {
    // One chunk (as `s3az` sends a streamed part) is passed on as it is, not copied.
    data: chunks.length === 1 && chunks[0] ? chunks[0] : Buffer.concat(chunks),
    trailers,
    ...(small >= 0 && { smallChunk: { chunk: small + 1, size: chunks[small]?.length ?? 0 } }),
  };
}
