import { readFile } from 'node:fs/promises';
import {
  CloudWatchClient,
  GetMetricDataCommand,
  type MetricDataQuery,
} from '@aws-sdk/client-cloudwatch';
import { awsClientSettings } from '../stores/aws-settings.ts';
import { groupDeadLetters, queueCounts, scanDeadLetters } from './dead-letters.ts';
import type { LocalState, OpsTarget, QueueName } from './target.ts';

/** One queue's depth. */
export interface QueueStatus {
  queue: QueueName;
  url: string;
  visible: number;
  inFlight: number;
  delayed: number;
  /** Seconds; `undefined` where it is not known (the local mirror, or no data yet). */
  oldestAgeSeconds?: number;
}

/** The last change a rule replicated, and how long it took from its event. */
export interface RuleStatus {
  rule: string;
  lastAt?: string;
  lastKey?: string;
  lastAction?: string;
  latencyMs?: number;
}

export interface PipelineStatus {
  target: string;
  at: string;
  queues: QueueStatus[];
  deadLetters: { total: number; byReason: Record<string, number>; truncated: boolean };
  rules: RuleStatus[];
  /** On a stack, from CloudWatch over the last 15 minutes (all rules together). */
  recent?: { objects: number; bytes: number; latencyP50Ms?: number; latencyP99Ms?: number };
}

const QUEUES: QueueName[] = ['events', 'tasks', 'eventsDeadLetter', 'tasksDeadLetter'];

function queueNameOf(url: string): string {
  return (
    url
      .replace(/[?#].*$/, '')
      .split('/')
      .filter(Boolean)
      .pop() ?? url
  );
}

/**
 * What the pipeline holds and how it keeps up: each queue's depth and, on a stack, the age of
 * its oldest message (CloudWatch's ApproximateAgeOfOldestMessage; SQS itself does not say);
 * dead letters by reason; per rule the last change replicated (the local mirror records it)
 * or, on a stack, objects, bytes and latency of the last 15 minutes.
 */
export async function pipelineStatus(
  target: OpsTarget,
  options: { now?: Date } = {},
): Promise<PipelineStatus> {
  const now = options.now ?? new Date();
  const queues = await Promise.all(
    QUEUES.map(async (queue) => {
      const url = target.queues[queue];
      return { queue, url, ...(await queueCounts(target.sqs, url)) };
    }),
  );
  const scan = await scanDeadLetters(target, { leaseSeconds: 60 });
  let byReason: Record<string, number> = {};
  try {
    byReason = {};
    for (const group of groupDeadLetters(scan.deadLetters)) {
      byReason[group.reason] = (byReason[group.reason] ?? 0) + group.count;
    }
  } finally {
    await scan.release();
  }
  const status: PipelineStatus = {
    target: target.name,
    at: now.toISOString(),
    queues,
    deadLetters: { total: scan.deadLetters.length, byReason, truncated: scan.truncated },
    rules: [],
  };
  if (target.local) {
    const state = await readLocalState(target.local.statePath);
    status.rules = target.local.config.rules.map((rule) => ({
      rule: rule.name,
      ...state?.lastChanges?.[rule.name],
    }));
    return status;
  }
  await addCloudWatch(target, status, now);
  return status;
}

async function readLocalState(path: string): Promise<LocalState | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LocalState;
  } catch {
    return undefined;
  }
}

async function addCloudWatch(target: OpsTarget, status: PipelineStatus, now: Date): Promise<void> {
  const cloudwatch = new CloudWatchClient(awsClientSettings(target.env, 'CLOUDWATCH'));
  const service = [{ Name: 'service', Value: 's3-azure-replicator' }];
  const metric = (
    id: string,
    namespace: string,
    name: string,
    dimensions: { Name: string; Value: string }[],
    stat: string,
  ): MetricDataQuery => ({
    Id: id,
    MetricStat: {
      Metric: { Namespace: namespace, MetricName: name, Dimensions: dimensions },
      Period: 60,
      Stat: stat,
    },
  });
  const queries: MetricDataQuery[] = [
    ...status.queues.map((queue, index) =>
      // The age of the oldest message: Maximum per minute, as SQS's own guidance reads it.
      // https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html
      metric(
        `age${index}`,
        'AWS/SQS',
        'ApproximateAgeOfOldestMessage',
        [{ Name: 'QueueName', Value: queueNameOf(queue.url) }],
        'Maximum',
      ),
    ),
    metric('objects', 'S3AzureReplicator', 'ObjectsReplicated', service, 'Sum'),
    metric('bytes', 'S3AzureReplicator', 'BytesReplicated', service, 'Sum'),
    metric('p50', 'S3AzureReplicator', 'ReplicationLatency', service, 'p50'),
    metric('p99', 'S3AzureReplicator', 'ReplicationLatency', service, 'p99'),
  ];
  try {
    const out = await cloudwatch.send(
      new GetMetricDataCommand({
        StartTime: new Date(now.getTime() - 15 * 60 * 1000),
        EndTime: now,
        MetricDataQueries: queries,
        ScanBy: 'TimestampDescending',
      }),
    );
    const values = new Map(
      (out.MetricDataResults ?? []).map((result) => [result.Id ?? '', result.Values ?? []]),
    );
    status.queues.forEach((queue, index) => {
      const latest = values.get(`age${index}`)?.[0];
      if (latest !== undefined) queue.oldestAgeSeconds = latest;
    });
    const sum = (id: string) => (values.get(id) ?? []).reduce((total, value) => total + value, 0);
    const latest = (id: string) => values.get(id)?.[0];
    const p50 = latest('p50');
    const p99 = latest('p99');
    status.recent = {
      objects: sum('objects'),
      bytes: sum('bytes'),
      ...(p50 !== undefined && { latencyP50Ms: p50 }),
      ...(p99 !== undefined && { latencyP99Ms: p99 }),
    };
  } catch {
    // Without cloudwatch:GetMetricData the rest of the status still stands.
  }
}
