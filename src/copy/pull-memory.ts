import type { ObjectStore } from '../stores/object-store.ts';

/**
 * Remembers destinations that cannot pull from a URL (an emulator's 501, Azure's
 * CannotVerifyCopySource for a source it cannot reach), so the engine asks once, says so
 * once, and streams from then on.
 */
export class PullMemory {
  readonly #disabled = new Map<string, string>();

  isDisabled(destination: ObjectStore): boolean {
    return this.#disabled.has(destination.describe(''));
  }

  /** Returns true the first time a destination is disabled (the moment to say so). */
  disable(destination: ObjectStore, reason: string): boolean {
    const id = destination.describe('');
    if (this.#disabled.has(id)) return false;
    this.#disabled.set(id, reason);
    return true;
  }
}
