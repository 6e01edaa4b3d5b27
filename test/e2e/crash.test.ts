import { describe, expect, it } from 'vitest';
import { describeSoak, soak } from '../bench/soak.ts';

// The short crash run: `npm run bench -- soak --kills 8 --objects 2000` runs a longer one.
describe('Crash: the replicator killed with SIGKILL during a run', () => {
  it('ends with both sides as the users left them after 5 kills and restarts', async () => {
    // Act
    const report = await soak({
      objects: 200,
      maxBytes: 20 * 1024 * 1024,
      // More files above the 8 MiB part size, so that kills cut multipart copies.
      largeShare: 0.15,
      faults: 'rate=0',
      concurrency: 8,
      settleTimeoutMs: 180_000,
      deleteHoldSeconds: 3,
      // Event Grid retries a delivery the killed webhook missed after 1 s, 3 s, 6 s, … here.
      eventGridRetryScale: 0.1,
      crash: { kills: 5, seed: 3, minGapMs: 1_500, maxGapMs: 4_000, aimAtUploads: true },
    });
    // Assess
    const summary = describeSoak(report);
    expect(report.kills.length, summary).toBe(5);
    // The kills cut work short: copies were running at some of them.
    expect(report.kills.filter((kill) => kill.copies > 0).length, summary).toBeGreaterThan(0);
    expect(report.lostDetail, summary).toEqual([]);
    expect(report.corrupted, summary).toEqual([]);
    expect(report.pingPong, summary).toEqual([]);
  }, 420_000);
});
