import type { ReplicationRule } from '../config/schema.ts';
import { compareSequencers, type ObjectEvent } from '../events/object-event.ts';
import type { Side } from '../stores/object-store.ts';
import { globToRegExp, keySelected } from './glob.ts';

/** One unit of work for the copy step: make the destination match one source key. */
export interface CopyTask {
  rule: string;
  /** What happened at the source: the copy step re-reads both sides before acting. */
  kind: 'created' | 'deleted';
  sourceSide: Side;
  sourceContainer: string;
  sourceKey: string;
  destinationContainer: string;
  destinationKey: string;
  sequencer?: string;
  eventTime: string;
  /** Carried from the event to the copy, for logs. */
  correlationId: string;
  /** The event says a user (not this tool) made the change. */
  writtenBy?: 'user';
  /** The eTag the event reported for the version it announced (quoted). */
  etag?: string;
  /**
   * The size the event reported for that version: a small one is read whole at once (its GET
   * answers what a HEAD would), instead of a HEAD and then a GET.
   */
  size?: number;
}

/** A directory rename or delete (ADLS Gen2), to be expanded into tasks by listing. */
export interface DirectoryTask {
  rule: string;
  kind: 'directory-renamed' | 'directory-deleted';
  sourceContainer: string;
  directory: string;
  previousDirectory?: string;
  eventTime: string;
  correlationId: string;
}

/** Account name of an account URL: first host label, or first path segment on an emulator. */
export function accountOf(accountUrl: string): string {
  const url = new URL(accountUrl);
  const emulator = url.hostname === 'localhost' || /^[\d.]+$/.test(url.hostname);
  return (
    (emulator ? url.pathname.split('/').find((part) => part !== '') : url.hostname.split('.')[0]) ??
    ''
  );
}

/** The rule's container and prefix on one side. */
export function sideOf(rule: ReplicationRule, side: Side) {
  return side === 's3'
    ? { container: rule.s3.bucket, prefix: rule.s3.prefix }
    : { container: rule.azure.container, prefix: rule.azure.prefix };
}

/** Whether the rule's `direction` replicates changes made on `from`. */
export function allowed(rule: ReplicationRule, from: Side): boolean {
  return (
    rule.direction === 'both' || rule.direction === (from === 's3' ? 's3-to-azure' : 'azure-to-s3')
  );
}

/** The rule that covers `key` on `side` (overlapping rules are refused at load, so at most one). */
export function ruleFor(
  rules: ReplicationRule[],
  side: Side,
  container: string,
  key: string,
  account?: string,
): ReplicationRule | undefined {
  return rules.find((rule) => {
    const here = sideOf(rule, side);
    if (here.container !== container || !key.startsWith(here.prefix)) return false;
    return side === 's3' || account === undefined || accountOf(rule.azure.accountUrl) === account;
  });
}

/**
 * The rule a directory event concerns: one whose prefix holds the directory (old or new
 * name), or lies inside it (`landing` or `data` for the prefix `data/landing/`: renaming or
 * deleting it moves or deletes everything the rule covers).
 */
function rulesForDirectory(rules: ReplicationRule[], event: ObjectEvent): ReplicationRule[] {
  const paths = [event.key, ...(event.sourceKey !== undefined ? [event.sourceKey] : [])].map(
    directoryPath,
  );
  return rules.filter((rule) => {
    const here = sideOf(rule, event.side);
    if (here.container !== event.container) return false;
    if (event.side === 'azure' && event.account !== undefined) {
      if (accountOf(rule.azure.accountUrl) !== event.account) return false;
    }
    return paths.some((path) => path.startsWith(here.prefix) || here.prefix.startsWith(path));
  });
}

/** A directory's path with one trailing `/` (the empty path for the container's root). */
export function directoryPath(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' ? '' : `${trimmed}/`;
}

/** Maps a key under the rule's prefix on one side to the key under the other side's prefix. */
export function destinationKeyOf(rule: ReplicationRule, from: Side, key: string): string {
  const source = sideOf(rule, from);
  const destination = sideOf(rule, from === 's3' ? 'azure' : 's3');
  return destination.prefix + key.slice(source.prefix.length);
}

function taskFor(
  rule: ReplicationRule,
  event: ObjectEvent,
  kind: 'created' | 'deleted',
  key: string,
): CopyTask | undefined {
  const relative = key.slice(sideOf(rule, event.side).prefix.length);
  if (!keySelected(relative, rule.include.map(globToRegExp), rule.exclude.map(globToRegExp)))
    return undefined;
  return {
    rule: rule.name,
    kind,
    sourceSide: event.side,
    sourceContainer: event.container,
    sourceKey: key,
    destinationContainer: sideOf(rule, event.side === 's3' ? 'azure' : 's3').container,
    destinationKey: destinationKeyOf(rule, event.side, key),
    ...(event.sequencer !== undefined && { sequencer: event.sequencer }),
    eventTime: event.eventTime,
    correlationId: event.id,
    ...(event.writtenBy === 'user' && { writtenBy: 'user' as const }),
    // A rename's event describes the new name; its delete of the old name has no version.
    ...(event.etag !== undefined && key === event.key && { etag: event.etag }),
    ...(event.size !== undefined &&
      key === event.key &&
      kind === 'created' && { size: event.size }),
  };
}

/**
 * The task for one key found by listing (a directory expanded): `key` is on `side` under the
 * rule's prefix there. `undefined` when the rule's include/exclude patterns leave it out.
 */
export function taskForKey(
  rule: ReplicationRule,
  side: Side,
  key: string,
  kind: 'created' | 'deleted',
  origin: { eventTime: string; correlationId: string },
): CopyTask | undefined {
  return taskFor(
    rule,
    {
      id: origin.correlationId,
      side,
      container: sideOf(rule, side).container,
      key,
      kind,
      eventTime: origin.eventTime,
    },
    kind,
    key,
  );
}

/** Events no rule covers (or whose direction a rule does not replicate) are counted and dropped. */
export interface RoutedBatch {
  tasks: CopyTask[];
  directories: DirectoryTask[];
  unrouted: number;
}

/**
 * What tasks of one batch collapse on: the rule, the source side and key, and the kind. A
 * batch keeps the newest `created` and the newest `deleted` task of a key, not only the newest
 * of the two: a user's delete and the event of a replica the copy step wrote back after it
 * (no provenance, as through EventBridge) come in one batch, and the write-back's task skips
 * (`replica`) where the delete's task removes both (`decide`, "a copy raced ahead").
 */
export function collapseKeyOf(task: CopyTask): string {
  return `${task.rule}\n${task.sourceSide}\n${task.sourceKey}\n${task.kind}`;
}

/**
 * Routes a batch of events through the rules and collapses the tasks of one source key and
 * kind to the newest (by sequencer, else event time; see `collapseKeyOf`), so a key gets at
 * most one `created` and one `deleted` task. A rename becomes a copy of the new name and a
 * delete of the old one. Pure.
 */
export function routeEvents(rules: ReplicationRule[], events: ObjectEvent[]): RoutedBatch {
  const newest = new Map<string, CopyTask>();
  const directories: DirectoryTask[] = [];
  let unrouted = 0;
  const keep = (task: CopyTask | undefined) => {
    if (!task) return;
    const id = collapseKeyOf(task);
    const current = newest.get(id);
    if (!current || isNewer(task, current)) newest.set(id, task);
  };
  for (const event of events) {
    if (event.kind === 'directory-renamed' || event.kind === 'directory-deleted') {
      // A directory can concern several rules (moved from one rule's prefix to another's, or
      // a parent of several prefixes): each expands its own part.
      const covering = rulesForDirectory(rules, event).filter((rule) => allowed(rule, event.side));
      if (covering.length === 0) unrouted += 1;
      for (const rule of covering) {
        directories.push({
          rule: rule.name,
          kind: event.kind,
          sourceContainer: event.container,
          directory: event.key,
          ...(event.sourceKey !== undefined && { previousDirectory: event.sourceKey }),
          eventTime: event.eventTime,
          correlationId: event.id,
        });
      }
      continue;
    }
    const rule = ruleFor(rules, event.side, event.container, event.key, event.account);
    let routed = rule !== undefined && allowed(rule, event.side);
    if (rule && routed) {
      keep(taskFor(rule, event, event.kind === 'deleted' ? 'deleted' : 'created', event.key));
    }
    if (event.kind === 'renamed' && event.sourceKey !== undefined) {
      // The old name may be another rule's: its delete goes to that rule. The rename's
      // sequencer orders changes of the new name; the old name's delete is ordered by its
      // time among that key's own events.
      const old = ruleFor(rules, event.side, event.container, event.sourceKey, event.account);
      if (old && allowed(old, event.side)) {
        const { sequencer: _newName, ...withoutSequencer } = event;
        keep(taskFor(old, withoutSequencer, 'deleted', event.sourceKey));
        routed = true;
      }
    }
    if (!routed) unrouted += 1;
  }
  return { tasks: [...newest.values()], directories, unrouted };
}

/** Whether `candidate` describes a later change of its key than `current` (sequencer, else time). */
export function isNewer(candidate: CopyTask, current: CopyTask): boolean {
  if (candidate.sequencer !== undefined && current.sequencer !== undefined) {
    return compareSequencers(candidate.sequencer, current.sequencer) > 0;
  }
  return Date.parse(candidate.eventTime) >= Date.parse(current.eventTime);
}
