import { describe, expect, it } from 'vitest';
import {
  COPY_STOP_MARGIN_SECONDS,
  COPY_TIMEOUT_SECONDS,
  MAX_RECEIVES,
  RETRY_CAP_SECONDS,
  retryDelaySeconds,
  TASKS_VISIBILITY_TIMEOUT_SECONDS,
} from '../../src/queue/timing.ts';

describe('Function: retryDelaySeconds', () => {
  it.each([
    [1, 30],
    [2, 60],
    [3, 120],
    [7, 1920],
    [8, 3600],
    [1000, 3600],
    [0, 30],
  ])('waits after receive %d for %d s', (receiveCount, seconds) => {
    expect(retryDelaySeconds(receiveCount)).toBe(seconds);
  });
});

describe('Constants: timing', () => {
  it('sizes the limits so a retry never overlaps a running attempt', () => {
    expect(COPY_STOP_MARGIN_SECONDS).toBeLessThan(COPY_TIMEOUT_SECONDS);
    expect(TASKS_VISIBILITY_TIMEOUT_SECONDS).toBeGreaterThanOrEqual(6 * COPY_TIMEOUT_SECONDS);
    // SQS's ceiling for a visibility timeout is 12 hours.
    expect(RETRY_CAP_SECONDS).toBeLessThanOrEqual(12 * 3600);
    let total = 0;
    for (let receive = 1; receive < MAX_RECEIVES; receive++) total += retryDelaySeconds(receive);
    // A poison message reaches the dead-letter queue within a working day.
    expect(total).toBeLessThan(8 * 3600);
  });
});
