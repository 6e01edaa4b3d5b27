import { Transform } from 'node:stream';
import { crc32 } from 'node:zlib';

/**
 * Bytes of each aws-chunked chunk but the last. S3 refuses chunks below 8 KiB before the last
 * one (`InvalidChunkSizeError`); 64 KiB is what the SDK buffers to when asked.
 */
const CHUNK_BYTES = 64 * 1024;

/** The trailer that carries the CRC32. */
export const CRC32_TRAILER = 'x-amz-checksum-crc32';

/**
 * Encodes a body as `aws-chunked` with its CRC32 in a trailer (the framing of
 * STREAMING-UNSIGNED-PAYLOAD-TRAILER): fixed 64 KiB chunks, then `0`, then the trailer.
 * https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
 *
 * The SDK can do this itself, but it also feeds the body to a separate checksum reader whose
 * pipe resumes the body whatever the request can take, so a part larger than the network can
 * drain piles up in memory. This is a single Transform: it holds at most one chunk and follows
 * the request's backpressure. `checksum()` gives the CRC32 (base64) once the body has ended.
 */
export function awsChunkedWithCrc32(): Transform & { checksum(): string | undefined } {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let value = 0;
  let done: string | undefined;
  const frame = (data: Buffer) =>
    Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n')]);
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      value = crc32(chunk, value);
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes < CHUNK_BYTES) {
        callback();
        return;
      }
      const all = Buffer.concat(pending, pendingBytes);
      const whole = all.length - (all.length % CHUNK_BYTES);
      for (let offset = 0; offset < whole; offset += CHUNK_BYTES) {
        this.push(frame(all.subarray(offset, offset + CHUNK_BYTES)));
      }
      pending = whole < all.length ? [all.subarray(whole)] : [];
      pendingBytes = all.length - whole;
      callback();
    },
    flush(callback) {
      if (pendingBytes > 0) this.push(frame(Buffer.concat(pending, pendingBytes)));
      const checksum = Buffer.alloc(4);
      checksum.writeUInt32BE(value >>> 0);
      done = checksum.toString('base64');
      this.push(`0\r\n${CRC32_TRAILER}:${done}\r\n\r\n`);
      callback();
    },
  });
  return Object.assign(stream, { checksum: () => done });
}
