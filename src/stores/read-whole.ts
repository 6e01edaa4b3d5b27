import type { Readable } from 'node:stream';
import { RetryableError } from '../errors.ts';
import type { ObjectHead, SmallObject } from './object-store.ts';

/**
 * Reads a response body of `size` bytes whole. A body that ends short (a connection that broke
 * off) or runs long is a retryable failure, never a short object.
 */
export async function readWhole(body: Readable, size: number, what: string): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(size);
  let at = 0;
  try {
    for await (const chunk of body) {
      const piece = chunk as Buffer;
      if (at + piece.length > size) {
        throw new RetryableError(`${what}: the body is longer than its ${size} bytes`);
      }
      piece.copy(bytes, at);
      at += piece.length;
    }
  } catch (error) {
    body.destroy();
    if (error instanceof RetryableError) throw error;
    throw new RetryableError(`${what}: reading the body failed`, { cause: error });
  }
  if (at !== size) {
    throw new RetryableError(`${what}: the body ended after ${at} of its ${size} bytes`);
  }
  return bytes;
}

/**
 * A whole GET's answer as `getSmall` gives it: the head, and the body read when it holds at
 * most `maxBytes` (a larger one is not read, and its connection is let go).
 */
export async function smallObjectOf(
  head: ObjectHead,
  body: Readable | undefined,
  maxBytes: number,
  what: string,
): Promise<SmallObject> {
  if (!body || head.size > maxBytes) {
    body?.destroy();
    return { head };
  }
  return { head, body: await readWhole(body, head.size, what) };
}
