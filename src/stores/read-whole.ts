import type { Readable } from 'node:stream';
import { RetryableError } from '../errors.ts';

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
