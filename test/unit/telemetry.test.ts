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

  it('records objects and bytes by direction too, with the service dimension', () => {
    // Dimensioned metrics are single metrics, each written at once as its own EMF line.
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'false');
    vi.stubEnv('POWERTOOLS_DEV', 'true');
    const lines: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((line: unknown) => {
      lines.push(String(line));
    });
    try {
      const metrics = new Metrics({ namespace: 'Test', serviceName: 'replicator' });
      const telemetry = new Telemetry(new Logger({ logLevel: 'SILENT' }), metrics);
      const copied = { action: 'copied', conflict: false, transfer: 'pull', decisions: 1 } as const;
      telemetry.taskDone(task, { ...copied, bytes: 1000 });
      telemetry.taskDone({ ...task, sourceSide: 'azure' }, { ...copied, bytes: 24 });
      telemetry.taskDone({ ...task, sourceSide: 'azure' }, { ...copied, bytes: 2 });
      const emf = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
      const sum = (metric: string, direction: string) =>
        emf
          .filter((entry) => entry.direction === direction && metric in entry)
          .reduce((total, entry) => total + Number(entry[metric]), 0);
      expect(sum('ObjectsReplicated', 's3-to-azure')).toBe(1);
      expect(sum('BytesReplicated', 's3-to-azure')).toBe(1000);
      expect(sum('ObjectsReplicated', 'azure-to-s3')).toBe(2);
      expect(sum('BytesReplicated', 'azure-to-s3')).toBe(26);
      for (const entry of emf) {
        const aws = entry._aws as {
          CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: unknown[] }[];
        };
        expect(aws.CloudWatchMetrics[0]?.Namespace).toBe('Test');
        expect(aws.CloudWatchMetrics[0]?.Dimensions).toEqual([['service', 'direction']]);
        expect(entry.service).toBe('replicator');
      }
      expect(
        emf.find((entry) => 'BytesReplicated' in entry)?._aws as Record<string, unknown>,
      ).toMatchObject({
        CloudWatchMetrics: [{ Metrics: [{ Name: 'BytesReplicated', Unit: 'Bytes' }] }],
      });
      // The totals keep their own dimensions (service only), buffered until the flush.
      const totals = metrics.serializeMetrics() as unknown as Record<string, unknown>;
      expect(totals.ObjectsReplicated).toEqual([1, 1, 1]);
      expect(totals.direction).toBeUndefined();
    } finally {
      log.mockRestore();
      vi.unstubAllEnvs();
    }
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
