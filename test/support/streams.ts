import type { Readable } from 'node:stream';
import type { ObjectStore } from '../../src/stores/object-store.ts';

/** Reads a whole stream into one buffer (tests only). */
export async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

const STAGE_ABOVE = 8 * 1024 * 1024;

/**
 * Writes a test object: one request when small, staged parts above 8 MiB (the emulators cap
 * request bodies at 11 MiB, where real S3 takes 5 GiB in one PUT).
 */
export async function putObject(store: ObjectStore, key: string, body: Buffer): Promise<void> {
  const write = { properties: {}, metadata: {}, condition: { kind: 'any' as const } };
  if (body.length <= STAGE_ABOVE) {
    await store.put(key, body, write);
    return;
  }
  const upload = await store.beginStaged(key, write, 'testdata00000000');
  const parts = [];
  for (let start = 0, n = 1; start < body.length; start += STAGE_ABOVE, n++) {
    parts.push(await store.stagePart(upload, n, body.subarray(start, start + STAGE_ABOVE)));
  }
  await store.commitStaged(upload, parts, { ...write, expectedSize: body.length });
}
