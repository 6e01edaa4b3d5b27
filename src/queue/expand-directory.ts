import * as z from 'zod';
import type { ReplicationRule } from '../config/schema.ts';
import {
  type CopyTask,
  type DirectoryTask,
  directoryPath,
  sideOf,
  taskForKey,
} from '../core/route.ts';
import { EventParseError } from '../events/object-event.ts';
import type { ObjectStore } from '../stores/object-store.ts';

/**
 * Tasks one plan message makes of a directory at most before it goes on in a follow-up
 * message: a bound on the plan function's memory and on the time it spends sending them
 * (10,000 tasks are 1,000 SendMessageBatch calls).
 */
export const DIRECTORY_TASKS_PER_MESSAGE = 10_000;

/**
 * The two listings of a directory event: `copies` lists the directory's new name on Azure
 * (one copy task per object), `deletes` lists the replicas under the old name (a rename) or
 * the deleted directory on S3 (one delete task per replica).
 */
export type DirectoryPhase = 'copies' | 'deletes';

/** Where the expansion of a directory stands: the listing, and the page it goes on from. */
export interface DirectoryProgress {
  phase: DirectoryPhase;
  continuationToken?: string;
}

/** The tasks of the pages listed, and where a follow-up message goes on (absent: all done). */
export interface DirectoryExpansion {
  tasks: CopyTask[];
  next?: DirectoryProgress;
}

export interface ExpandOptions {
  signal?: AbortSignal;
  /** Fires when the invocation nears its end: no new page is listed after it. */
  stop?: AbortSignal;
  /** Where an earlier message stopped. */
  from?: DirectoryProgress;
  /** Tasks after which no new page is listed (default DIRECTORY_TASKS_PER_MESSAGE). */
  maxTasks?: number;
  /** Keys per listing page (default: the store's own, 1,000 on S3 and 5,000 on Azure). */
  pageSize?: number;
}

interface Listing {
  store: ObjectStore;
  prefix: string;
  taskOf(key: string): CopyTask | undefined;
}

/**
 * Tasks for an ADLS Gen2 directory that was renamed or deleted, a page of a listing at a
 * time: the objects now under the new name are copied; the replicas under the old name (or
 * the deleted directory) on the other side get delete tasks, which the copy step carries out
 * only when the rule mirrors deletes and the replica is still what was replicated. After
 * `maxTasks` tasks or when `stop` fires, it returns where to go on, so that a directory of any
 * size is expanded in as many messages as it takes instead of timing out and starting over.
 * Every call lists at least one page, so each message makes progress.
 */
export async function expandDirectory(
  directory: DirectoryTask,
  rule: ReplicationRule,
  stores: { s3: ObjectStore; azure: ObjectStore },
  options: ExpandOptions = {},
): Promise<DirectoryExpansion> {
  const origin = { eventTime: directory.eventTime, correlationId: directory.correlationId };
  const azure = sideOf(rule, 'azure');
  const s3 = sideOf(rule, 's3');
  // The part of a directory the rule covers: the directory itself when it lies under the
  // rule's prefix, the whole prefix when the directory holds it, nothing otherwise.
  const covered = (path: string): string | undefined => {
    const under = directoryPath(path);
    if (under.startsWith(azure.prefix)) return under;
    return azure.prefix.startsWith(under) ? azure.prefix : undefined;
  };
  const listingOf = (phase: DirectoryPhase): Listing | undefined => {
    if (phase === 'copies') {
      const under = covered(directory.directory);
      if (under === undefined) return undefined;
      return {
        store: stores.azure,
        prefix: under,
        taskOf: (key) => taskForKey(rule, 'azure', key, 'created', origin),
      };
    }
    const gone =
      directory.kind === 'directory-renamed' ? directory.previousDirectory : directory.directory;
    const under = gone === undefined ? undefined : covered(gone);
    if (under === undefined) return undefined;
    return {
      store: stores.s3,
      prefix: s3.prefix + under.slice(azure.prefix.length),
      taskOf: (key) =>
        taskForKey(rule, 'azure', azure.prefix + key.slice(s3.prefix.length), 'deleted', origin),
    };
  };
  const phases: DirectoryPhase[] =
    directory.kind === 'directory-renamed' ? ['copies', 'deletes'] : ['deletes'];
  const maxTasks = options.maxTasks ?? DIRECTORY_TASKS_PER_MESSAGE;
  const tasks: CopyTask[] = [];
  let index = options.from ? Math.max(0, phases.indexOf(options.from.phase)) : 0;
  let token = options.from?.continuationToken;
  let pages = 0;
  while (index < phases.length) {
    const phase = phases[index] as DirectoryPhase;
    const listing = listingOf(phase);
    if (!listing) {
      index += 1;
      token = undefined;
      continue;
    }
    if (pages > 0 && (tasks.length >= maxTasks || options.stop?.aborted)) {
      return { tasks, next: { phase, ...(token !== undefined && { continuationToken: token }) } };
    }
    const page = await listing.store.list(listing.prefix, {
      ...(token !== undefined && { continuationToken: token }),
      ...(options.pageSize !== undefined && { maxResults: options.pageSize }),
      ...(options.signal && { signal: options.signal }),
    });
    pages += 1;
    for (const item of page.items) {
      const task = listing.taskOf(item.key);
      if (task) tasks.push(task);
    }
    token = page.continuationToken;
    if (token === undefined) index += 1;
  }
  return { tasks };
}

const directorySchema = z.strictObject({
  rule: z.string().min(1),
  kind: z.enum(['directory-renamed', 'directory-deleted']),
  sourceContainer: z.string().min(1),
  directory: z.string(),
  previousDirectory: z.string().optional(),
  eventTime: z.string(),
  correlationId: z.string(),
});

const continuationSchema = z.strictObject({
  s3azDirectoryContinuation: z.strictObject({
    directory: directorySchema,
    phase: z.enum(['copies', 'deletes']),
    continuationToken: z.string().min(1).optional(),
  }),
});

/** A directory's expansion that goes on in another message of the events queue. */
export interface DirectoryContinuation {
  directory: DirectoryTask;
  from: DirectoryProgress;
}

/** The events-queue message that carries on with `directory` from `next`. */
export function continuationMessage(directory: DirectoryTask, next: DirectoryProgress): string {
  return JSON.stringify({ s3azDirectoryContinuation: { directory, ...next } });
}

/**
 * A follow-up message of `continuationMessage`, or `undefined` for any other body (an event).
 * One that names itself a continuation but does not parse is an `EventParseError`.
 */
export function parseDirectoryContinuation(body: string): DirectoryContinuation | undefined {
  if (!body.includes('"s3azDirectoryContinuation"')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || !('s3azDirectoryContinuation' in value)) {
    return undefined;
  }
  const result = continuationSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new EventParseError(
      `the directory continuation does not parse: ${issue?.path.join('.') || '(top level)'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const { directory, phase, continuationToken } = result.data.s3azDirectoryContinuation;
  const { previousDirectory, ...rest } = directory;
  return {
    directory: { ...rest, ...(previousDirectory !== undefined && { previousDirectory }) },
    from: { phase, ...(continuationToken !== undefined && { continuationToken }) },
  };
}
