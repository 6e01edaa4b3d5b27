import type { ObjectStore } from '../../src/stores/object-store.ts';

const STAGING_CALLS = new Set<string | symbol>([
  'stagePart',
  'stagePartStream',
  'stagePartFromUrl',
]);

/**
 * Wraps a real store to count the parts it stages (Put Block, UploadPart from a buffer or a stream, Put Block From URL),
 * calling `after` with the count after each: a test stops a copy after k parts, or checks how
 * many a resumed copy sent.
 */
export function countingParts<T extends ObjectStore>(
  store: T,
  after?: (sent: number) => void,
): { store: T; sent: () => number } {
  let sent = 0;
  const wrapped = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      if (!STAGING_CALLS.has(property)) return value.bind(target);
      return async (...args: unknown[]) => {
        const result: unknown = await (value as (...a: unknown[]) => unknown).apply(target, args);
        sent += 1;
        after?.(sent);
        return result;
      };
    },
  });
  return { store: wrapped, sent: () => sent };
}
