import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';

/** The S3 flexible checksums this emulator verifies, by the suffix of their `x-amz-checksum-*` name. */
export type ChecksumAlgorithm = 'crc32' | 'crc32c' | 'sha1' | 'sha256';

/** The names S3 uses in its messages and XML elements. */
export const CHECKSUM_NAMES: Record<ChecksumAlgorithm, string> = {
  crc32: 'CRC32',
  crc32c: 'CRC32C',
  sha1: 'SHA1',
  sha256: 'SHA256',
};

const DIGEST_BYTES: Record<ChecksumAlgorithm, number> = {
  crc32: 4,
  crc32c: 4,
  sha1: 20,
  sha256: 32,
};

/** Castagnoli polynomial, reflected (CRC-32C, as S3 and iSCSI use it). */
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32c(body: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of body) crc = (CRC32C_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function bigEndian(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
}

/** The checksum of `body` as S3 writes it: base64 of the big-endian CRC, or of the digest. */
export function checksumOf(algorithm: ChecksumAlgorithm, body: Uint8Array): string {
  switch (algorithm) {
    case 'crc32':
      return bigEndian(crc32(body)).toString('base64');
    case 'crc32c':
      return bigEndian(crc32c(body)).toString('base64');
    case 'sha1':
    case 'sha256':
      return createHash(algorithm).update(body).digest('base64');
  }
}

/** Whether `value` is well formed for `algorithm` (base64 of the right number of bytes). */
export function isWellFormedChecksum(algorithm: ChecksumAlgorithm, value: string): boolean {
  return (
    /^[A-Za-z0-9+/]+={0,2}$/.test(value) &&
    Buffer.from(value, 'base64').length === DIGEST_BYTES[algorithm]
  );
}

/** The algorithm named by a header such as `x-amz-checksum-crc32`, if this emulator knows it. */
export function checksumAlgorithmOf(headerName: string): ChecksumAlgorithm | undefined {
  const suffix = headerName.toLowerCase().replace(/^x-amz-checksum-/, '');
  return suffix in DIGEST_BYTES ? (suffix as ChecksumAlgorithm) : undefined;
}
