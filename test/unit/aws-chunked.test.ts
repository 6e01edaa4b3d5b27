import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeAwsChunked } from '../../src/local/aws-chunked.ts';
import { awsChunkedWithCrc32, CRC32_TRAILER } from '../../src/stores/aws-chunked.ts';

function crc32Base64(data: Buffer): string {
  const value = Buffer.alloc(4);
  value.writeUInt32BE(crc32(data) >>> 0);
  return value.toString('base64');
}

async function encode(pieces: Buffer[], size: number): Promise<Buffer> {
  const encoder = awsChunkedWithCrc32(size);
  return buffer(Readable.from(pieces).pipe(encoder));
}

describe('awsChunkedWithCrc32', () => {
  it('frames a body that arrives in pieces as one chunk, with its CRC32 in the trailer', async () => {
    const data = randomBytes(300_000);
    const pieces = [
      Buffer.alloc(0),
      data.subarray(0, 1),
      data.subarray(1, 70_000),
      data.subarray(70_000),
    ];
    const encoded = await encode(pieces, data.length);
    expect(encoded.subarray(0, 7).toString('latin1')).toBe(`${data.length.toString(16)}\r\n`);
    const decoded = decodeAwsChunked(encoded);
    expect(decoded?.data.equals(data)).toBe(true);
    expect(decoded?.trailers).toEqual({ [CRC32_TRAILER]: crc32Base64(data) });
    expect(decoded?.smallChunk).toBeUndefined();
  });

  it('frames an empty body as the terminating chunk and its trailer', async () => {
    const encoded = await encode([], 0);
    expect(encoded.toString('latin1')).toBe(`0\r\n${CRC32_TRAILER}:AAAAAA==\r\n\r\n`);
    expect(decodeAwsChunked(encoded)?.data.length).toBe(0);
  });

  it('fails a body shorter or longer than declared instead of framing it', async () => {
    await expect(encode([randomBytes(10)], 11)).rejects.toThrow('ended after 10 of the 11 bytes');
    await expect(encode([randomBytes(6), randomBytes(6)], 11)).rejects.toThrow(
      'longer than the 11 bytes',
    );
  });
});
