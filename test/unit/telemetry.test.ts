import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { describe, expect, it, vi } from 'vitest';
import type { CopyTask } from '../../src/core/route.ts';
import { Telemetry } from '../../src/observe/telemetry.ts';

const task: CopyTask = {
  rule: 'r',
  kind: 'created',
  sourceSide: 's3',
  sourceContainer: 'b',
  sourceKey: 'k',
  destinationContainer: 'c',
  destinationKey: 'k',
  eventTime: '2026-11-23T10:00:00.000Z',
  correlationId: 'corr-1',
};

describe('Class: Telemetry', () => {
  it('records objects, bytes and latency from event time to commit as EMF metrics', () => {
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'false');
    const metrics = new Metrics({ namespace: 'Test', serviceName: 'test' });
    vi.unstubAllEnvs();
    const telemetry = new Telemetry(new Logger({ logLevel: 'SILENT' }), metrics);
    telemetry.taskDone(
      task,
      { action: 'copied', bytes: 1234, conflict: false, transfer: 'pull', decisions: 1 },
      Date.parse(task.eventTime) + 750,
    );
    const emf = metrics.serializeMetrics() as unknown as Record<string, unknown>;
    expect(emf.ObjectsReplicated).toBe(1);
    expect(emf.BytesReplicated).toBe(1234);
    expect(emf.ReplicationLatency).toBe(750);
    expect(telemetry.counters()).toMatchObject({ copied: 1, bytes: 1234 });
  });

  it('logs with the correlation id and counts skips by reason and failures by class', () => {
    const logger = new Logger({ logLevel: 'SILENT' });
    const info = vi.spyOn(logger, 'info');
    const telemetry = new Telemetry(logger, new Metrics({ namespace: 'Test' }));
    const seen: string[] = [];
    telemetry.onTask((report) => seen.push(report.result));
    telemetry.taskDone(task, {
      action: 'skipped',
      reason: 'replica',
      detail: 'ours',
      decisions: 1,
    });
    telemetry.taskFailed(task, 'retryable', 'boom', false, 1);
    telemetry.taskFailed(task, 'permanent', 'denied', true, 1);
    expect(info).toHaveBeenCalledWith(
      'skipped',
      expect.objectContaining({ correlationId: 'corr-1', reason: 'replica' }),
    );
    expect(telemetry.counters()).toMatchObject({
      'skipped.replica': 1,
      'failed.retryable': 1,
      'failed.permanent': 1,
      'dead-lettered': 1,
    });
    expect(seen).toEqual(['done', 'failed', 'failed']);
  });
});
