import { type Readable, Transform } from 'node:stream';
import { RetryableError } from '../errors.ts';
import type { ObjectHead, SmallObject } from './object-store.ts';

/**
 * Reads a body of known size into one buffer (`into`, when given, else a new one), copying each
 * chunk once. A body that ends short or runs long is a transport fault and retryable.
 */
export async function readExactly(
  body: Readable,
  size: number,
  what: string,
  into?: Buffer,
): Promise<Buffer> {
  const buffer = into ? into.subarray(0, size) : Buffer.allocUnsafe(size);
  let offset = 0;
  try {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      if (offset + chunk.length > size) {
        throw new RetryableError(`${what}: body is longer than the ${size} bytes expected`);
      }
      buffer.set(chunk, offset);
      offset += chunk.length;
    }
  } catch (error) {
    body.destroy();
    if (error instanceof RetryableError) throw error;
    throw new RetryableError(`${what}: reading the body failed`, { cause: error });
  }
  if (offset !== size) {
    throw new RetryableError(`${what}: body ended after ${offset} of ${size} bytes`);
  }
  return buffer;
}

/**
 * Passes a body of known size through unchanged, failing the stream when it runs longer than
 * `size` or ends short (a transport fault, retryable), so nothing of another length is sent on.
 */
export function exactLength(size: number, what: string): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > size) {
        done(new RetryableError(`${what}: body is longer than the ${size} bytes expected`));
        return;
      }
      done(null, chunk);
    },
    flush(done) {
      done(
        seen === size
          ? null
          : new RetryableError(`${what}: body ended after ${seen} of ${size} bytes`),
      );
    },
  });
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
  return { head, body: await readExactly(body, head.size, what) };
}
