import { Transform } from 'node:stream';
import { crc32 } from 'node:zlib';

/** The trailer that carries the CRC32. */
export const CRC32_TRAILER = 'x-amz-checksum-crc32';

/**
 * Encodes a body of exactly `size` bytes as `aws-chunked` with its CRC32 in a trailer (the
 * framing of STREAMING-UNSIGNED-PAYLOAD-TRAILER): one chunk of `size` bytes, then `0`, then
 * the trailer. https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
 *
 * One chunk, because the size is known: S3 bounds chunks only from below (8 KiB, except the
 * last), and the SDK's own encoder frames each piece of the body as it comes, whatever its
 * size. The body's bytes pass through as they arrive, never copied into frames of another size
 * (re-framing into 64 KiB chunks cost a copy of every byte here and in the emulator that
 * decodes it).
 *
 * The SDK can do this itself, but it also feeds the body to a separate checksum reader whose
 * pipe resumes the body whatever the request can take, so a part larger than the network can
 * drain piles up in memory. This is a single Transform: it holds nothing and follows the
 * request's backpressure. A body longer or shorter than `size` fails the stream instead of
 * sending a chunk that lies about its length. `checksum()` gives the CRC32 (base64) once the
 * body has ended.
 */
export function awsChunkedWithCrc32(size: number): Transform & { checksum(): string | undefined } {
  let value = 0;
  let seen = 0;
  let done: string | undefined;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (chunk.length === 0) {
        callback();
        return;
      }
      seen += chunk.length;
      if (seen > size) {
        callback(new Error(`the body is longer than the ${size} bytes it declared`));
        return;
      }
      if (seen === chunk.length) this.push(`${size.toString(16)}\r\n`);
      value = crc32(chunk, value);
      callback(null, chunk);
    },
    flush(callback) {
      if (seen !== size) {
        callback(new Error(`the body ended after ${seen} of the ${size} bytes it declared`));
        return;
      }
      const checksum = Buffer.alloc(4);
      checksum.writeUInt32BE(value >>> 0);
      done = checksum.toString('base64');
      // An empty body is the terminating chunk alone.
      this.push(`${size > 0 ? '\r\n' : ''}0\r\n${CRC32_TRAILER}:${done}\r\n\r\n`);
      callback();
    },
  });
  return Object.assign(stream, { checksum: () => done });
}
