import { describe, expect, it } from 'vitest';
import { PullMemory } from '../../src/copy/pull-memory.ts';

const MINUTE = 60_000;

/** A store as PullMemory sees it: by the name it describes itself with. */
const store = (name: string) => ({ describe: (key: string) => `${name}/${key}` });

describe('Class: PullMemory', () => {
  const source = store('s3://bucket');
  const destination = store('az://container');

  function withClock(options: { forgetAfterMs?: number } = {}) {
    const clock = { now: 0 };
    const memory = new PullMemory({ ...options, now: () => clock.now });
    return { clock, memory };
  }

  it('remembers a destination that cannot pull, and says so only the first time', () => {
    // Prepare
    const { memory } = withClock();
    // Act
    const first = memory.disable(source, destination, 'NotImplemented');
    const second = memory.disable(source, destination, 'NotImplemented');
    // Assess
    expect([first, second]).toEqual([true, false]);
    expect(memory.isDisabled(source, destination)).toBe(true);
  });

  it('forgets it after 10 minutes by default, so that a repaired path is used again', () => {
    // Prepare
    const { clock, memory } = withClock();
    memory.disable(source, destination, 'CannotVerifyCopySource 403');
    // Act
    clock.now = 10 * MINUTE - 1;
    const before = memory.isDisabled(source, destination);
    clock.now = 10 * MINUTE;
    const after = memory.isDisabled(source, destination);
    // Assess
    expect(before).toBe(true);
    expect(after).toBe(false);
  });

  it('forgets it after the time it is given, and says so again when it is disabled again', () => {
    // Prepare
    const { clock, memory } = withClock({ forgetAfterMs: 2 * MINUTE });
    memory.disable(source, destination, 'NotImplemented');
    // Act
    clock.now = 2 * MINUTE;
    const forgotten = !memory.isDisabled(source, destination);
    const saysAgain = memory.disable(source, destination, 'NotImplemented');
    // Assess
    expect(forgotten).toBe(true);
    expect(saysAgain).toBe(true);
    expect(memory.isDisabled(source, destination)).toBe(true);
  });

  it('keeps each source and destination pair apart', () => {
    const { memory } = withClock();
    memory.disable(source, destination, 'CannotVerifyCopySource 403');
    expect(memory.isDisabled(store('s3://other'), destination)).toBe(false);
    expect(memory.isDisabled(source, store('az://other'))).toBe(false);
  });

  it.each([
    [{ forgetAfterMs: 0 }, /forgetAfterMs/],
    [{ forgetAfterMs: Number.NaN }, /forgetAfterMs/],
    [{ forgetAfterMinutes: 10 }, /forgetAfterMinutes/],
  ])('refuses the options %o', (options, message) => {
    expect(() => new PullMemory(options as never)).toThrow(message);
  });
});
