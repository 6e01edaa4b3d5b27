import { describe, expect, it } from 'vitest';
import { describeSoak, soak } from '../bench/soak.ts';

// The short soak: `npm run bench -- soak` runs the full one (10,000 objects).
describe('Soak: the local mirror under injected faults', () => {
  it('ends with both sides as the users left them: nothing lost, corrupted or copied back and forth', async () => {
    // Act
    const report = await soak({
      objects: 300,
      maxBytes: 12 * 1024 * 1024,
      faults: 'rate=5%,seed=11',
      concurrency: 8,
      settleTimeoutMs: 120_000,
      // Deletes in doubt wait seconds here, not the deployed five minutes.
      deleteHoldSeconds: 3,
    });
    // Assess
    const summary = describeSoak(report);
    expect(report.lost, summary).toEqual([]);
    expect(report.corrupted, summary).toEqual([]);
    expect(report.pingPong, summary).toEqual([]);
    const faults = Object.values(report.faults).reduce((sum, count) => sum + count, 0);
    expect(faults, summary).toBeGreaterThan(20);
    expect(report.copies, summary).toBeGreaterThanOrEqual(report.objects);
  }, 300_000);
});
