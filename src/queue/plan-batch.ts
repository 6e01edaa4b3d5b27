import type { SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSRecord } from 'aws-lambda';
import type { ReplicationRule } from '../config/schema.ts';
import {
  type CopyTask,
  type DirectoryTask,
  directoryPath,
  isNewer,
  routeEvents,
  sideOf,
  taskForKey,
} from '../core/route.ts';
import { asReplicatorError } from '../errors.ts';
import { EventParseError } from '../events/object-event.ts';
import { parseQueuedEvent } from '../events/queued.ts';
import type { Telemetry } from '../observe/telemetry.ts';
import type { ObjectStore } from '../stores/object-store.ts';
import { sendEach, sendToDeadLetter } from './sqs.ts';

/** What the plan step needs, built once per cold start by the composition root. */
export interface PlanDependencies {
  sqs: SQSClient;
  rules: ReplicationRule[];
  /** The events queue (its URL names the source of a dead letter). */
  eventsQueueUrl: string;
  eventsDeadLetterQueueUrl: string;
  tasksQueueUrl: string;
  /** Both stores of a rule, for expanding ADLS Gen2 directory events by listing. */
  storesOf(rule: ReplicationRule): Promise<{ s3: ObjectStore; azure: ObjectStore }>;
  /** The S3 principals the replicator writes as (see `ProvenanceOptions`). */
  ownS3Principals?: readonly string[];
  telemetry?: Telemetry;
}

async function listKeys(store: ObjectStore, prefix: string, signal?: AbortSignal) {
  const keys: string[] = [];
  let continuationToken: string | undefined;
  do {
    const page = await store.list(prefix, {
      ...(continuationToken !== undefined && { continuationToken }),
      ...(signal && { signal }),
    });
    keys.push(...page.items.map((item) => item.key));
    continuationToken = page.continuationToken;
  } while (continuationToken !== undefined);
  return keys;
}

/**
 * One task per object under an ADLS Gen2 directory that was renamed or deleted: the objects
 * now under the new name are copied; the replicas under the old name (or the deleted
 * directory) on the other side get delete tasks, which the copy step carries out only when
 * the rule mirrors deletes and the replica is still what was replicated.
 */
export async function expandDirectory(
  directory: DirectoryTask,
  rule: ReplicationRule,
  stores: { s3: ObjectStore; azure: ObjectStore },
  signal?: AbortSignal,
): Promise<CopyTask[]> {
  const origin = { eventTime: directory.eventTime, correlationId: directory.correlationId };
  const azure = sideOf(rule, 'azure');
  const s3 = sideOf(rule, 's3');
  const tasks: CopyTask[] = [];
  // The part of a directory the rule covers: the directory itself when it lies under the
  // rule's prefix, the whole prefix when the directory holds it, nothing otherwise.
  const covered = (path: string): string | undefined => {
    const directory = directoryPath(path);
    if (directory.startsWith(azure.prefix)) return directory;
    return azure.prefix.startsWith(directory) ? azure.prefix : undefined;
  };
  const replicasUnder = async (path: string) => {
    const under = covered(path);
    if (under === undefined) return;
    const destinationPrefix = s3.prefix + under.slice(azure.prefix.length);
    for (const key of await listKeys(stores.s3, destinationPrefix, signal)) {
      const sourceKey = azure.prefix + key.slice(s3.prefix.length);
      const task = taskForKey(rule, 'azure', sourceKey, 'deleted', origin);
      if (task) tasks.push(task);
    }
  };
  if (directory.kind === 'directory-renamed') {
    const under = covered(directory.directory);
    if (under !== undefined) {
      for (const key of await listKeys(stores.azure, under, signal)) {
        const task = taskForKey(rule, 'azure', key, 'created', origin);
        if (task) tasks.push(task);
      }
    }
    if (directory.previousDirectory !== undefined) await replicasUnder(directory.previousDirectory);
  } else {
    await replicasUnder(directory.directory);
  }
  return tasks;
}

/**
 * The plan step for one batch of the events queue: parse each message, route its events
 * through the rules (events no rule covers are counted and dropped), expand directory events
 * by listing, collapse tasks for the same key across the batch to the newest, and send one
 * task per object to the tasks queue. A message that can never parse goes to the events
 * dead-letter queue with its reason. Returns the records to retry: exactly those whose tasks
 * could not all be planned or stored, so the rest of the batch is not done twice.
 */
export async function planBatch(
  records: SQSRecord[],
  dependencies: PlanDependencies,
  signal?: AbortSignal,
): Promise<SQSBatchResponse> {
  const failed = new Set<string>();
  const newest = new Map<string, { task: CopyTask; records: Set<string> }>();
  const counts = { events: 0, tasks: 0, unrouted: 0, ignored: [] as string[], deadLettered: 0 };
  const logger = dependencies.telemetry?.logger;

  for (const record of records) {
    const id = record.messageId;
    try {
      let parsed: ReturnType<typeof parseQueuedEvent>;
      try {
        parsed = parseQueuedEvent(
          record.body,
          dependencies.ownS3Principals ? { ownS3Principals: dependencies.ownS3Principals } : {},
        );
      } catch (error) {
        if (!(error instanceof EventParseError)) throw error;
        await sendToDeadLetter(
          dependencies.sqs,
          dependencies.eventsDeadLetterQueueUrl,
          record.body,
          {
            reason: 'malformed-event',
            error: error.message,
            receiveCount: Number(record.attributes.ApproximateReceiveCount ?? '1'),
            sourceQueue: dependencies.eventsQueueUrl,
          },
        );
        counts.deadLettered += 1;
        logger?.error('event dead-lettered: it does not parse', {
          messageId: id,
          error: error.message,
        });
        continue;
      }
      counts.events += parsed.events.length;
      counts.ignored.push(...parsed.ignored);
      // Rule 2: the events of the replicator's own writes and deletes need no task.
      const own = parsed.events.filter((event) => event.writtenBy === 'replicator');
      if (own.length > 0) dependencies.telemetry?.replicaEvents(own);
      const routed = routeEvents(
        dependencies.rules,
        parsed.events.filter((event) => event.writtenBy !== 'replicator'),
      );
      counts.unrouted += routed.unrouted;
      const tasks = [...routed.tasks];
      for (const directory of routed.directories) {
        const rule = dependencies.rules.find((candidate) => candidate.name === directory.rule);
        if (!rule) continue;
        tasks.push(
          ...(await expandDirectory(directory, rule, await dependencies.storesOf(rule), signal)),
        );
      }
      for (const task of tasks) {
        const key = `${task.rule}\n${task.sourceSide}\n${task.sourceKey}`;
        const current = newest.get(key);
        if (!current) newest.set(key, { task, records: new Set([id]) });
        else {
          current.records.add(id);
          if (isNewer(task, current.task)) current.task = task;
        }
      }
    } catch (raw) {
      const error = asReplicatorError(raw);
      failed.add(id);
      logger?.warn('event not planned; it will be retried', {
        messageId: id,
        error: error.message,
      });
    }
  }

  // A task that a failed record contributed to is not sent: every record it came from is
  // retried, so that no change is lost with the failed one. (Tasks sent twice are harmless.)
  const planned: Array<{ task: CopyTask; records: Set<string> }> = [];
  for (const entry of newest.values()) {
    if ([...entry.records].some((id) => failed.has(id))) {
      for (const id of entry.records) failed.add(id);
    } else planned.push(entry);
  }
  const { failed: unsent } = await sendEach(
    dependencies.sqs,
    dependencies.tasksQueueUrl,
    planned.map((entry) => ({ body: JSON.stringify(entry.task) })),
    signal,
  );
  for (const [index, why] of unsent) {
    const entry = planned[index];
    if (!entry) continue;
    for (const id of entry.records) failed.add(id);
    logger?.warn('task not stored; its events will be retried', {
      correlationId: entry.task.correlationId,
      error: why.reason,
    });
  }
  counts.tasks = planned.length - unsent.size;
  dependencies.telemetry?.planned(counts);
  return { batchItemFailures: [...failed].map((itemIdentifier) => ({ itemIdentifier })) };
}
