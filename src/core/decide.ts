import type { ObjectHead, Side, WriteCondition } from '../stores/object-store.ts';
import { type ReplicaMarker, readReplicaMarker, sourceDigest, sourceRef } from './metadata.ts';

/** Why a task ended without writing anything. */
export type SkipReason =
  | 'replica'
  | 'up-to-date'
  | 'conflict'
  | 'diverged'
  | 'excluded'
  | 'source-gone'
  | 'folder-marker';

/** Skips that leave the two sides different, on purpose: each is a conflict a user should see. */
export const DIFFERENCE_KEPT: ReadonlySet<SkipReason> = new Set(['conflict', 'diverged']);

export type Decision =
  | { action: 'copy'; condition: WriteCondition; conflict: boolean }
  | {
      action: 'delete';
      condition: WriteCondition;
      /**
       * Delete the source first, on this condition: it is our replica of a version older than
       * the delete, written back before the delete's own task ran.
       */
      sourceCondition?: WriteCondition;
    }
  | { action: 'skip'; reason: SkipReason; detail: string }
  | {
      /**
       * A delete in doubt: the destination version `etag` may have been written after the
       * delete. Wait (DELETE_HOLD_SECONDS), then decide again with `held` (see DecisionInput).
       */
      action: 'hold';
      etag: string;
      detail: string;
    };

/** Where the task's two objects are, and what the event said about the change. */
export interface DecisionTask {
  rule: string;
  /** The side the change happened on. */
  sourceSide: Side;
  kind: 'created' | 'deleted';
  sourceContainer: string;
  sourceKey: string;
  destinationContainer: string;
  destinationKey: string;
  /** ISO 8601: when the change happened (for a delete, when the object was deleted). */
  eventTime: string;
  /**
   * The event's provenance: `user` when the event says someone other than this tool made
   * the change (an S3 principal or an Azure client request id that is not ours).
   */
  writtenBy?: 'user';
  /** The eTag the event reported for the version it announced (quoted). */
  etag?: string;
}

/** What the decision needs to know about the task and the rule. */
export interface DecisionInput {
  task: DecisionTask;
  /** The rule lets this key through its include/exclude patterns and direction. */
  selected: boolean;
  /** The rule mirrors deletes. */
  mirrorDeletes: boolean;
  /** Which side wins a conflict whose writes carry the same time. */
  tieWinner: Side;
  /** Current state of the source object (undefined: absent). */
  source: ObjectHead | undefined;
  /** Current state of the destination object (undefined: absent). */
  destination: ObjectHead | undefined;
  /**
   * An earlier run of this delete held it (a `hold` decision) on the destination version
   * `etag`; `over` once the hold's time has passed.
   */
  held?: { etag: string; over: boolean };
}

const skip = (reason: SkipReason, detail: string): Decision => ({ action: 'skip', reason, detail });

const otherSide = (side: Side): Side => (side === 's3' ? 'azure' : 's3');

function conditionFor(destination: ObjectHead | undefined): WriteCondition {
  return destination ? { kind: 'match', etag: destination.etag } : { kind: 'absent' };
}

/**
 * Whether the object is a folder placeholder, not a file: an S3 key ending in `/` (the
 * console's "folders"; Azure would drop the slash), or the zero-length blob through which the
 * Blob API shows an ADLS Gen2 directory, which carries the metadata `hdi_isfolder=true`
 * ("directories appear in the list as zero-length blobs":
 * https://learn.microsoft.com/answers/questions/904103/do-we-have-an-option-for-hierarchical-folder-optio).
 */
export function isFolderMarker(key: string, head: ObjectHead | undefined): boolean {
  if (key.endsWith('/')) return true;
  if (!head) return false;
  return Object.entries(head.metadata).some(
    ([name, value]) => name.toLowerCase() === 'hdi_isfolder' && value.toLowerCase() === 'true',
  );
}

/** Whether a marker's `source` names (`container`, `key`), in either of its forms. */
function sourceMatches(source: string, container: string, key: string): boolean {
  return source === sourceRef(container, key) || source === sourceDigest(container, key);
}

/**
 * Whether `marker` says its object is a replica, made by `rule`, of the object at
 * (`origin`, `container`, `key`). A marker written before markers named their source (no
 * `source`) is taken to name the key it sits at, so objects replicated by earlier versions
 * are still recognised. One that names another rule, or none (`s3az copy`), or another key
 * (the object was copied or renamed since) is not a replica of this key.
 */
export function markerNames(
  marker: ReplicaMarker,
  rule: string,
  origin: Side,
  container: string,
  key: string,
): boolean {
  if (marker.origin !== origin) return false;
  if (marker.source === undefined) return true;
  return marker.rule === rule && sourceMatches(marker.source, container, key);
}

/**
 * How much later than its marker's `replicatedAt` a replica may be dated: the write's own
 * duration (one request, or the commit of staged parts), its retries, and the stores' clocks.
 * A rewrite that keeps the marker sooner than this is told apart only by its size or MD5.
 */
export const REPLICA_DATE_WINDOW_MS = 30_000;
// Last-Modified is whole seconds (rounded down) and clocks differ a little.
const CLOCK_SKEW_MS = 5_000;

/**
 * Whether the object still holds the content its marker describes. A client that rewrites
 * an object and keeps its metadata (rclone does) keeps the marker too, but the rewrite is
 * dated later than the replica's write, and may have another size or, where both are known,
 * another MD5.
 */
export function contentIntact(head: ObjectHead, marker: ReplicaMarker): boolean {
  if (marker.size !== undefined && head.size !== marker.size) return false;
  // The replica is dated from its own write, which its marker records; a rewrite or a copy
  // that kept the marker is dated later.
  if (marker.replicatedAt !== undefined) {
    const lag = head.lastModified.getTime() - Date.parse(marker.replicatedAt);
    if (lag > REPLICA_DATE_WINDOW_MS || lag < -CLOCK_SKEW_MS) return false;
  }
  return (
    marker.contentMd5 === undefined ||
    head.contentMd5 === undefined ||
    head.contentMd5 === marker.contentMd5
  );
}

/**
 * The source eTag `head` is an intact copy of, when its marker names (`origin`, `container`,
 * `key`) whatever rule (or none, `s3az copy`) wrote it.
 */
function copyOf(
  head: ObjectHead,
  origin: Side,
  container: string,
  key: string,
): string | undefined {
  const marker = readReplicaMarker(head.metadata);
  if (!marker || marker.origin !== origin || marker.source === undefined) return undefined;
  if (!sourceMatches(marker.source, container, key) || !contentIntact(head, marker))
    return undefined;
  return marker.sourceEtag;
}

/**
 * The marker of `head` when it is an intact replica, made by `rule`, of the object at
 * (`origin`, `container`, `key`); otherwise `undefined`.
 */
export function replicaMarkerOf(
  head: ObjectHead | undefined,
  rule: string,
  origin: Side,
  container: string,
  key: string,
): ReplicaMarker | undefined {
  if (!head) return undefined;
  const marker = readReplicaMarker(head.metadata);
  if (!marker || !markerNames(marker, rule, origin, container, key)) return undefined;
  return contentIntact(head, marker) ? marker : undefined;
}

/**
 * Whether the live source version is the one the event announced as a user's write: then it
 * replicates whatever metadata it kept (rule 2). Without provenance, or for another version,
 * the marker decides.
 */
export function isUserWrite(task: DecisionTask, source: ObjectHead | undefined): boolean {
  if (task.writtenBy !== 'user' || source === undefined) return false;
  if (task.kind === 'created') return task.etag === source.etag;
  // A user's delete after which the object still exists made an older version current (a
  // versioned rollback): what is there now is the user's change, whatever its marker says,
  // unless it is our replica written back after the delete.
  const replicatedAt = readReplicaMarker(source.metadata)?.replicatedAt;
  return (
    replicatedAt === undefined ||
    secondOf(Date.parse(replicatedAt)) < secondOf(Date.parse(task.eventTime))
  );
}

/**
 * Whether the source looks like this tool's own replica of the destination key (the marker
 * names it and the content is intact) and no event says a user wrote it. Such a task needs
 * the destination to decide; every other `created` task may try a create first.
 */
export function looksLikeEcho(task: DecisionTask, source: ObjectHead | undefined): boolean {
  if (!source || isUserWrite(task, source)) return false;
  const { rule, sourceSide, destinationContainer, destinationKey } = task;
  return (
    replicaMarkerOf(source, rule, otherSide(sourceSide), destinationContainer, destinationKey) !==
    undefined
  );
}

// Last-Modified (S3 and Azure) and the HTTP date are whole seconds; an event time has
// milliseconds. A write in the same second as a delete may have come after it.
const secondOf = (time: number) => Math.floor(time / 1000);

/**
 * How long a multipart upload may run: S3 dates the object from the upload's start, so one
 * dated this long before a delete may still have completed after it.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html
 */
export const MULTIPART_DATE_DOUBT_MS = 60 * 60 * 1000;

/** Whether an eTag is an S3 multipart object's (`"<hex>-<parts>"`), dated from its upload's start. */
export function isMultipartEtag(etag: string): boolean {
  return /-\d+"?$/.test(etag);
}

/**
 * Whether `head` was certainly written before the delete at `deletedAt`: dated at least one
 * whole second before it (one second of room for a write racing the delete's own read, and
 * for Last-Modified's whole seconds), and, for an S3 multipart object (an ETag ending in
 * `-N`, dated from the upload's start), at least `MULTIPART_DATE_DOUBT_MS` before it.
 */
function writtenBeforeDelete(head: ObjectHead, deletedAt: number): boolean {
  if (!Number.isFinite(deletedAt)) return false;
  const written = head.lastModified.getTime();
  if (isMultipartEtag(head.etag) && written > deletedAt - MULTIPART_DATE_DOUBT_MS) return false;
  return secondOf(written) < secondOf(deletedAt) - 1;
}

/**
 * Whether `head` was certainly written after the delete at `deletedAt`: dated in a later
 * second (for an S3 multipart object, the date of its upload's start is later still).
 */
function writtenAfterDelete(head: ObjectHead, deletedAt: number): boolean {
  return Number.isFinite(deletedAt) && secondOf(head.lastModified.getTime()) > secondOf(deletedAt);
}

function decideDelete(input: DecisionInput, destination: ObjectHead): Decision {
  const { task, held } = input;
  const ours = replicaMarkerOf(
    destination,
    task.rule,
    task.sourceSide,
    task.sourceContainer,
    task.sourceKey,
  );
  // Rule 7: the destination is our replica of the deleted object: it goes too.
  if (ours) return { action: 'delete', condition: { kind: 'match', etag: destination.etag } };
  // The destination is the original of the deleted replica, or a user's own write. It goes
  // unless it was written after the delete (newest wins).
  const deletedAt = Date.parse(task.eventTime);
  const deleteIt: Decision = {
    action: 'delete',
    condition: { kind: 'match', etag: destination.etag },
  };
  if (writtenBeforeDelete(destination, deletedAt)) return deleteIt;
  const dated = `the destination (dated ${destination.lastModified.toISOString()})`;
  const at = Number.isFinite(deletedAt) ? new Date(deletedAt).toISOString() : 'an unknown time';
  if (!Number.isFinite(deletedAt) || writtenAfterDelete(destination, deletedAt)) {
    return skip(
      'diverged',
      `${dated} was written after the delete at ${at}; kept (conflict: the newer change wins)`,
    );
  }
  if (held && held.etag !== destination.etag) {
    return skip(
      'diverged',
      `${dated} was written while the delete at ${at} waited; kept (conflict: the newer change wins)`,
    );
  }
  // In doubt (a write in the delete's second, or an S3 multipart object, which S3 dates from
  // its upload's start). A version written after the delete has an event of its own, which
  // carries it across: then the source exists again when the hold is over, and the delete is
  // not decided here. A version still alone after the hold was there before the delete.
  if (held?.over) return deleteIt;
  return {
    action: 'hold',
    etag: destination.etag,
    detail: `${dated} may have been written after the delete at ${at}; the delete waits for that version's own event before it goes ahead`,
  };
}

/**
 * Decides what one task does, from the live state of both stores (README, "Who wrote it"):
 * copy (conditional on the destination state seen here), delete (likewise), or skip with a
 * reason. Timestamps decide only a true conflict (both sides changed by users since the last
 * replication); otherwise a source that differs from what the destination replica was made
 * from replicates, whatever its date. Pure; the caller re-reads both sides and decides again
 * after a 412.
 */
export function decide(input: DecisionInput): Decision {
  const { source, destination, task } = input;
  if (!input.selected) return skip('excluded', 'the rule does not replicate this key this way');
  if (isFolderMarker(task.sourceKey, source)) {
    return skip(
      'folder-marker',
      'a folder placeholder (a key ending in "/", or an ADLS Gen2 directory), not a file: S3 and Azure keep folders differently',
    );
  }
  if (task.kind === 'deleted' && !input.mirrorDeletes) {
    return skip('excluded', 'the rule does not mirror deletes');
  }
  if (!source) {
    if (task.kind === 'created') return skip('source-gone', 'the source no longer exists');
    if (!destination) return skip('up-to-date', 'the destination is already absent');
    return decideDelete(input, destination);
  }
  // From here the source exists: for a delete event it exists again (a versioned rollback,
  // or a write after the delete), and is replicated like a created one.
  const other = otherSide(task.sourceSide);
  const sourceMarker = readReplicaMarker(source.metadata);
  const sourceNamesDestination =
    sourceMarker !== undefined &&
    markerNames(sourceMarker, task.rule, other, task.destinationContainer, task.destinationKey);
  const destinationMarker = replicaMarkerOf(
    destination,
    task.rule,
    task.sourceSide,
    task.sourceContainer,
    task.sourceKey,
  );

  const echo = looksLikeEcho(task, source);

  // A delete whose source exists again only as our replica of the destination's version,
  // written back after the delete, and that version is older than the delete: a copy raced
  // ahead of the delete's task and wrote the deleted file back. The delete is the newer
  // change: both go (the source first, so a retry still finds what to do). A user's copy of
  // an older replica keeps that replica's earlier `replicatedAt`, and is kept.
  const copyOfDestination =
    destination !== undefined && sourceMarker?.sourceEtag === destination.etag;
  const deletedAt = Date.parse(task.eventTime);
  if (
    task.kind === 'deleted' &&
    destination &&
    echo &&
    copyOfDestination &&
    sourceMarker?.replicatedAt !== undefined &&
    secondOf(Date.parse(sourceMarker.replicatedAt)) >= secondOf(deletedAt) &&
    writtenBeforeDelete(destination, deletedAt)
  ) {
    return {
      action: 'delete',
      condition: { kind: 'match', etag: destination.etag },
      sourceCondition: { kind: 'match', etag: source.etag },
    };
  }

  // Rule 2: the source is our replica of exactly what the destination holds now (even if the
  // destination carries a marker too, say after a rename there and back): nothing to copy.
  if (echo && copyOfDestination) {
    return skip('replica', `the source is a replica of the ${other} side`);
  }

  if (destination && destinationMarker) {
    // Rule 3: the destination is our replica of this key and holds this version.
    if (destinationMarker.sourceEtag === source.etag) {
      return skip('up-to-date', 'the destination already holds this version');
    }
    // Rule 4: our replica of an earlier version, untouched since: the current source wins.
    return { action: 'copy', condition: conditionFor(destination), conflict: false };
  }

  // Rule 2: the source is our replica of the destination key, unchanged since we wrote it.
  if (echo) {
    return skip('replica', `the source is a replica of the ${other} side`);
  }
  if (!destination) return { action: 'copy', condition: { kind: 'absent' }, conflict: false };

  // The source was our replica of exactly this destination version and a user rewrote it
  // (keeping the marker): only the source changed since the last replication.
  if (sourceNamesDestination && copyOfDestination) {
    return { action: 'copy', condition: conditionFor(destination), conflict: false };
  }
  if (
    source.size === destination.size &&
    source.contentMd5 !== undefined &&
    source.contentMd5 === destination.contentMd5
  ) {
    return skip('up-to-date', 'the destination already holds the same content');
  }
  // One side is an intact copy of the other's current version made outside this rule (by
  // `s3az copy`, a backfill): the two already agree.
  if (
    (!isUserWrite(task, source) &&
      copyOf(source, other, task.destinationContainer, task.destinationKey) === destination.etag) ||
    copyOf(destination, task.sourceSide, task.sourceContainer, task.sourceKey) === source.etag
  ) {
    return skip('up-to-date', 'one side is a copy of the version the other holds');
  }

  // A true conflict: both sides were changed by users since the last replication. The newer
  // write wins, a tie goes to the configured side.
  // A rollback restores an older version with its old date; the change is the rollback.
  const rolledBackAt =
    task.kind === 'deleted' && isUserWrite(task, source) ? Date.parse(task.eventTime) : Number.NaN;
  const sourceTime = Math.max(source.lastModified.getTime(), rolledBackAt || 0);
  const destinationTime = destination.lastModified.getTime();
  if (
    sourceTime > destinationTime ||
    (sourceTime === destinationTime && input.tieWinner === task.sourceSide)
  ) {
    return { action: 'copy', condition: conditionFor(destination), conflict: true };
  }
  const when = (head: ObjectHead) => head.lastModified.toISOString();
  return skip(
    'conflict',
    sourceTime === destinationTime
      ? `both sides were changed by users at the same time (${when(destination)}); the rule gives a tie to ${input.tieWinner}`
      : `both sides were changed by users; the destination's write (${when(destination)}) is newer than the source's (${when(source)}) and wins`,
  );
}
