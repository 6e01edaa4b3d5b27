/**
 * A fixed set of part buffers, lent out one per range in flight. Memory stays at
 * `count x size` however large the object is, and nothing waits on the garbage collector to
 * give back what a finished part used.
 */
export class BufferPool {
  readonly #size: number;
  readonly #free: Buffer[] = [];
  #created = 0;
  readonly #count: number;

  constructor(count: number, size: number) {
    this.#count = count;
    this.#size = size;
  }

  /** A buffer of at least `size` bytes; the caller gives it back with `release`. */
  acquire(): Buffer {
    const buffer = this.#free.pop();
    if (buffer) return buffer;
    if (this.#created >= this.#count) {
      // The pool is sized to the concurrency, so a lane never asks for more than one.
      throw new RangeError('buffer pool exhausted');
    }
    this.#created += 1;
    return Buffer.allocUnsafe(this.#size);
  }

  release(buffer: Buffer): void {
    this.#free.push(buffer);
  }
}
