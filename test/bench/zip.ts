import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { inflateRawSync } from 'node:zlib';

/** One file of a zip archive. */
export interface ZipEntry {
  name: string;
  /** Bytes in the archive (compressed). */
  compressedSize: number;
  /** Bytes once extracted. */
  size: number;
  /** The file's contents, extracted. */
  read(): Buffer;
}

/**
 * The files of a zip archive (as `serverless package` writes them: stored or deflated, no
 * zip64), read from its central directory. Enough to inspect and extract a Lambda package
 * without an `unzip` on the machine.
 */
export function readZip(zip: Buffer): ZipEntry[] {
  // The end of central directory record: 22 bytes, after which only a comment may follow.
  let end = zip.length - 22;
  while (end >= 0 && zip.readUInt32LE(end) !== 0x06054b50) end -= 1;
  if (end < 0) throw new Error('not a zip archive (no end of central directory)');
  const count = zip.readUInt16LE(end + 10);
  let at = zip.readUInt32LE(end + 16);
  const entries: ZipEntry[] = [];
  for (let index = 0; index < count; index++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('zip: bad central directory');
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString('utf8', at + 46, at + 46 + nameLength);
    at += 46 + nameLength + extraLength + commentLength;
    if (name.endsWith('/')) continue;
    entries.push({
      name,
      compressedSize,
      size,
      read() {
        const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
        const data = zip.subarray(start, start + compressedSize);
        if (method === 0) return Buffer.from(data);
        if (method === 8) return inflateRawSync(data);
        throw new Error(`zip: ${name} uses compression method ${method}`);
      },
    });
  }
  return entries;
}

/** Extracts every file of a zip archive under `dir`; answers the files' paths in the archive. */
export async function extractZip(zip: Buffer, dir: string): Promise<string[]> {
  const names: string[] = [];
  for (const entry of readZip(zip)) {
    const path = normalize(join(dir, entry.name));
    if (!path.startsWith(normalize(dir))) throw new Error(`zip: ${entry.name} leaves the folder`);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, entry.read());
    names.push(entry.name);
  }
  return names;
}
