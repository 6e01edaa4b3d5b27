import { UsageError } from '../errors.ts';
import type { ObjectStore } from '../stores/object-store.ts';

/** A store as the memory knows it: by the name it describes itself with. */
type Named = Pick<ObjectStore, 'describe'>;

export interface PullMemoryOptions {
  /** How long a destination streams before it tries to pull from that source again. Default 10 min. */
  forgetAfterMs?: number;
  /** The clock, in milliseconds (tests pass a fake one). Default `Date.now`. */
  now?: () => number;
}

const DEFAULT_FORGET_AFTER_MS = 10 * 60_000;
const OPTION_NAMES = new Set(['forgetAfterMs', 'now']);

/**
 * Remembers, for a while, that a destination cannot pull from a source (an emulator's 501,
 * Azure's CannotVerifyCopySource for a source that refuses it or gives no answer), so the
 * engine asks once, says so once, and streams from then on. Only definitive answers are
 * remembered (the store classifies them as `PullUnsupportedError`), and they are forgotten
 * after `forgetAfterMs`, so a repaired path (a bucket policy fixed, a network rule lifted) is
 * pulled through again without waiting for a cold start.
 */
export class PullMemory {
  readonly #disabled = new Map<string, { reason: string; until: number }>();
  readonly #forgetAfterMs: number;
  readonly #now: () => number;

  constructor(options: PullMemoryOptions = {}) {
    for (const name of Object.keys(options)) {
      if (!OPTION_NAMES.has(name)) throw new UsageError(`PullMemory: unknown option ${name}`);
    }
    const forgetAfterMs = options.forgetAfterMs ?? DEFAULT_FORGET_AFTER_MS;
    if (!Number.isFinite(forgetAfterMs) || forgetAfterMs <= 0) {
      throw new UsageError(
        `PullMemory: forgetAfterMs must be a positive number of milliseconds, got ${forgetAfterMs}`,
      );
    }
    this.#forgetAfterMs = forgetAfterMs;
    this.#now = options.now ?? Date.now;
  }

  isDisabled(source: Named, destination: Named): boolean {
    const id = idOf(source, destination);
    const entry = this.#disabled.get(id);
    if (!entry) return false;
    if (this.#now() < entry.until) return true;
    this.#disabled.delete(id);
    return false;
  }

  /** Returns true when the pair was not disabled already (the moment to say so). */
  disable(source: Named, destination: Named, reason: string): boolean {
    const first = !this.isDisabled(source, destination);
    if (first) {
      this.#disabled.set(idOf(source, destination), {
        reason,
        until: this.#now() + this.#forgetAfterMs,
      });
    }
    return first;
  }
}

// A source that refuses one account's addresses may serve another's; an emulator that cannot
// pull cannot pull from any source, and is then remembered once per source.
function idOf(source: Named, destination: Named): string {
  return `${source.describe('')} -> ${destination.describe('')}`;
}
