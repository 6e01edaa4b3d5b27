import { PermanentError } from '../errors.ts';
import type { Side } from '../stores/object-store.ts';

/**
 * Orders a listing may come in.
 *
 * - `binary`: UTF-8 byte order (the same as code point order). S3 general purpose buckets list
 *   this way ("lexicographical order"; https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html),
 *   and so do Azure accounts without a hierarchical namespace for ASCII names ("alphabetical
 *   order, with upper-case letters listed first").
 * - `utf16`: UTF-16 code unit order (JavaScript's `<`): some S3-compatible stores and Azurite;
 *   it differs from `binary` only between characters above U+FFFF and U+E000-U+FFFF.
 * - `tree`: a hierarchical-namespace (ADLS Gen2) account lists a directory's contents right
 *   after the directory, as if `/` sorted before every other character: `A`, `A/dat1`, `A-B`
 *   where `binary` gives `A`, `A-B`, `A/dat1` (https://github.com/Azure/azure-sdk-for-go/issues/24210).
 */
export type KeyOrder = 'binary' | 'utf16' | 'tree';

export const KEY_ORDERS: readonly KeyOrder[] = ['binary', 'utf16', 'tree'];

const SLASH = 0x2f;

/** Ranks a UTF-16 code unit by the code point it belongs to: surrogates above all the others. */
function rank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}

/** Compares two keys in `order`: negative when `a` comes first, 0 when they are the same key. */
export function compareKeys(order: KeyOrder, a: string, b: string): number {
  if (order === 'utf16') return a < b ? -1 : a > b ? 1 : 0;
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (order === 'tree') {
      if (x === SLASH) return -1;
      if (y === SLASH) return 1;
    }
    return rank(x) - rank(y);
  }
  return a.length - b.length;
}

/** A listing that came in no order `KEY_ORDERS` knows: a merge with it would be wrong. */
export class ListingOrderError extends PermanentError {
  constructor(message: string) {
    super(message);
    this.name = 'ListingOrderError';
  }
}

/** Where one side's listing stands, as a continuation carries it. */
export interface CursorState {
  /** The orders the listing may still be in (each one seen so far agrees with all of them). */
  orders: KeyOrder[];
  /** The last key listed, relative to the rule's prefix. */
  last?: string;
  /** The listing has ended. */
  done: boolean;
}

/**
 * One side's listing position. The store's order is not assumed: every order the listing has
 * not contradicted yet stays possible, and a key counts as passed only when it comes before the
 * last one listed in all of them.
 */
export class ListingCursor {
  #orders: KeyOrder[];
  #last: string | undefined;
  #done: boolean;
  readonly #name: string;

  constructor(name: string, state: CursorState = { orders: [...KEY_ORDERS], done: false }) {
    this.#name = name;
    this.#orders = [...state.orders];
    this.#last = state.last;
    this.#done = state.done;
  }

  get state(): CursorState {
    return {
      orders: [...this.#orders],
      ...(this.#last !== undefined && { last: this.#last }),
      done: this.#done,
    };
  }

  get done(): boolean {
    return this.#done;
  }

  /**
   * Records the next key of the listing and drops the orders it contradicts.
   *
   * @throws ListingOrderError when no known order is left.
   */
  advance(key: string): void {
    const last = this.#last;
    if (last !== undefined) {
      const orders = this.#orders.filter((order) => compareKeys(order, last, key) < 0);
      if (orders.length === 0) {
        throw new ListingOrderError(
          `the listing of ${this.#name} is in no order reconcile knows ("${key}" came after "${last}"): the two sides cannot be compared`,
        );
      }
      this.#orders = orders;
    }
    this.#last = key;
  }

  /** The listing has ended. */
  finish(): void {
    this.#done = true;
  }

  /** Whether the listing will not list `key` from now on. */
  passed(key: string): boolean {
    if (this.#done) return true;
    const last = this.#last;
    return last !== undefined && this.#orders.every((order) => compareKeys(order, key, last) < 0);
  }
}

/** One key of a rule, as each side holds it (absent: not there). */
export interface KeyPair<T> {
  /** The key relative to the rule's prefixes (the same on both sides). */
  relative: string;
  s3?: T;
  azure?: T;
}

const otherSide = (side: Side): Side => (side === 's3' ? 'azure' : 's3');

/**
 * Joins two listings of a rule (S3 under `s3.prefix`, Azure under `azure.prefix`) key by key,
 * whatever order each comes in, holding only the keys the other side has not reached yet. A key
 * is handed out once: with both objects when both sides list it, alone once the other side's
 * listing has passed it or ended. Pure.
 */
export class ListingMerge<T extends { key: string }> {
  readonly #prefix: Record<Side, string>;
  readonly #cursor: Record<Side, ListingCursor>;
  readonly #pending: Record<Side, Map<string, T>> = { s3: new Map(), azure: new Map() };

  constructor(
    prefixes: Record<Side, string>,
    names: Record<Side, string>,
    cursors?: Record<Side, CursorState>,
  ) {
    this.#prefix = { ...prefixes };
    this.#cursor = {
      s3: new ListingCursor(names.s3, cursors?.s3),
      azure: new ListingCursor(names.azure, cursors?.azure),
    };
  }

  /** Each side's cursor, to carry on in another invocation. */
  cursorState(side: Side): CursorState {
    return this.#cursor[side].state;
  }

  /** Whether a side's listing has ended. */
  done(side: Side): boolean {
    return this.#cursor[side].done;
  }

  /** The objects of `side` waiting for the other side's listing, in the order they came. */
  pending(side: Side): T[] {
    return [...this.#pending[side].values()];
  }

  /** How many objects of `side` wait for the other side's listing. */
  pendingCount(side: Side): number {
    return this.#pending[side].size;
  }

  /** Puts back an object that was waiting when an earlier invocation stopped. */
  restore(side: Side, item: T): void {
    this.#pending[side].set(item.key.slice(this.#prefix[side].length), item);
  }

  /** The next page of `side`'s listing: the keys it settles. */
  add(side: Side, items: readonly T[]): KeyPair<T>[] {
    const other = otherSide(side);
    const cursor = this.#cursor[side];
    const settled: KeyPair<T>[] = [];
    for (const item of items) {
      const relative = item.key.slice(this.#prefix[side].length);
      cursor.advance(relative);
      const match = this.#pending[other].get(relative);
      if (match !== undefined) {
        this.#pending[other].delete(relative);
        settled.push({ relative, [side]: item, [other]: match });
      } else if (this.#cursor[other].passed(relative)) {
        settled.push({ relative, [side]: item });
      } else {
        this.#pending[side].set(relative, item);
      }
    }
    settled.push(...this.#sweep(other));
    return settled;
  }

  /** `side`'s listing has ended: what waited for it is settled. */
  finish(side: Side): KeyPair<T>[] {
    this.#cursor[side].finish();
    return this.#sweep(otherSide(side));
  }

  /** The waiting objects of `side` that the other side's listing has passed. */
  #sweep(side: Side): KeyPair<T>[] {
    const cursor = this.#cursor[otherSide(side)];
    const settled: KeyPair<T>[] = [];
    for (const [relative, item] of this.#pending[side]) {
      if (!cursor.passed(relative)) continue;
      this.#pending[side].delete(relative);
      settled.push({ relative, [side]: item });
    }
    return settled;
  }
}
