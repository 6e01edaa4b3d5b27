import type { ReplicationRule } from '../config/schema.ts';
import { DELETE_HOLD_SECONDS } from '../queue/timing.ts';
import type { ObjectHead, Side } from '../stores/object-store.ts';
import {
  type DecisionTask,
  decide,
  isFolderMarker,
  isMultipartEtag,
  MULTIPART_DATE_DOUBT_MS,
  replicaMarkerOf,
} from './decide.ts';
import { allowed, type CopyTask, destinationKeyOf, taskForKey } from './route.ts';

/**
 * What reconcile knows about one object: what a listing says, and the user metadata where the
 * listing carries it (Azure) or a HEAD read it (S3, whose listings carry none).
 */
export interface ObjectState {
  key: string;
  size: number;
  /** Quoted, as the store's HEAD returns it. */
  etag: string;
  lastModified: Date;
  /** Base64 MD5 of the content, where the store vouches for it. */
  contentMd5?: string;
  /** Native user metadata; `undefined` when it was not read. */
  metadata?: Record<string, string>;
}

/**
 * How the two sides of a key differ:
 * - `missing-on-azure` / `missing-on-s3`: an object exists on one side only, and it is not this
 *   rule's replica of the other side's key (a new object, or a backfill);
 * - `stale`: one side is this rule's intact replica of the other's key, made from another
 *   version than the one there now;
 * - `diverged`: both exist, and neither is this rule's intact replica of the other (both were
 *   changed by users, or a user rewrote a replica);
 * - `deleted`: only a replica remains: its original is gone.
 */
export type DifferenceKind =
  | 'missing-on-azure'
  | 'missing-on-s3'
  | 'stale'
  | 'diverged'
  | 'deleted';

export const DIFFERENCE_KINDS: readonly DifferenceKind[] = [
  'missing-on-azure',
  'missing-on-s3',
  'stale',
  'diverged',
  'deleted',
];

/**
 * Why a key is left alone although the sides may differ: a folder placeholder, a key the
 * rule's include/exclude patterns leave out, a change the rule's direction does not replicate,
 * a delete when the rule does not mirror deletes, or a recent S3 multipart object on one side
 * only (`recent`: its replica's delete may be waiting; see RECONCILE_MULTIPART_GRACE_MS).
 */
export type IgnoredReason =
  | 'folder-marker'
  | 'excluded'
  | 'direction'
  | 'deletes-not-mirrored'
  | 'recent';

export const IGNORED_REASONS: readonly IgnoredReason[] = [
  'folder-marker',
  'excluded',
  'direction',
  'deletes-not-mirrored',
  'recent',
];

/**
 * An S3 multipart object on one side only and younger than this is left to the events: a
 * user may just have deleted its replica, and that delete waits (DELETE_HOLD_SECONDS) because
 * S3 dates a multipart object from its upload's start (MULTIPART_DATE_DOUBT_MS). Copying it
 * back meanwhile would undo the delete. The next run copies it if its event was lost.
 */
export const RECONCILE_MULTIPART_GRACE_MS = MULTIPART_DATE_DOUBT_MS + DELETE_HOLD_SECONDS * 1000;

/** What reconcile makes of one key. */
export type KeyVerdict =
  | { verdict: 'in-sync' }
  | { verdict: 'ignored'; reason: IgnoredReason }
  /** The metadata of `side` is needed to tell (a HEAD): classify again with it. */
  | { verdict: 'needs-metadata'; side: Side }
  /** One task makes the sides agree: the copy step decides it as it decides an event's. */
  | { verdict: 'difference'; difference: DifferenceKind; task: CopyTask };

/** Where the tasks of a reconcile run say they come from. */
export interface TaskOrigin {
  eventTime: string;
  correlationId: string;
}

const otherSide = (side: Side): Side => (side === 's3' ? 'azure' : 's3');

/** The side a task writes or deletes on. */
export function destinationSideOf(task: CopyTask): Side {
  return otherSide(task.sourceSide);
}

/**
 * The MD5 an S3 ETag stands for when it is one (32 hex digits). A listing does not say how an
 * object is encrypted, so this is a candidate only: equal to another store's Content-MD5, it is
 * the same content (an SSE-KMS or SSE-C ETag is no MD5 of the data and will not be equal).
 */
function etagMd5(etag: string): string | undefined {
  const hex = /^"?([0-9a-f]{32})"?$/.exec(etag)?.[1];
  return hex === undefined ? undefined : Buffer.from(hex, 'hex').toString('base64');
}

/** The object as `decide` reads it, when its metadata is known. */
function headOf(object: ObjectState): ObjectHead | undefined {
  if (object.metadata === undefined) return undefined;
  return {
    key: object.key,
    size: object.size,
    etag: object.etag,
    lastModified: object.lastModified,
    ...(object.contentMd5 !== undefined && { contentMd5: object.contentMd5 }),
    properties: {},
    metadata: object.metadata,
  };
}

function isFolder(object: ObjectState | undefined): boolean {
  if (!object) return false;
  return isFolderMarker(object.key, headOf(object));
}

/**
 * Whether the two objects certainly agree from what the listings say: the same size and MD5,
 * or one side is this rule's intact replica of exactly the version the other side holds. No
 * HEAD is needed for the common cases: a replica on Azure (its marker is listed), and a
 * single-request replica on S3 of a blob with a Content-MD5 (its ETag is that MD5).
 */
function agree(rule: ReplicationRule, s3: ObjectState, azure: ObjectState): boolean {
  const s3Md5 = s3.contentMd5 ?? etagMd5(s3.etag);
  if (s3.size === azure.size && azure.contentMd5 !== undefined && s3Md5 === azure.contentMd5) {
    return true;
  }
  const azureHead = headOf(azure);
  if (
    azureHead &&
    replicaMarkerOf(azureHead, rule.name, 's3', rule.s3.bucket, s3.key)?.sourceEtag === s3.etag
  ) {
    return true;
  }
  const s3Head = headOf(s3);
  return (
    s3Head !== undefined &&
    replicaMarkerOf(s3Head, rule.name, 'azure', rule.azure.container, azure.key)?.sourceEtag ===
      azure.etag
  );
}

function decision(
  rule: ReplicationRule,
  task: DecisionTask,
  source: ObjectHead | undefined,
  destination: ObjectHead | undefined,
) {
  return decide({
    task,
    selected: true,
    mirrorDeletes: rule.deletes === 'mirror',
    tieWinner: rule.conflictWinner,
    source,
    destination,
  });
}

function found(rule: ReplicationRule, difference: DifferenceKind, task: CopyTask): KeyVerdict {
  // A difference only the other direction could repair is not this rule's to repair; events
  // would leave it as it is too.
  if (!allowed(rule, task.sourceSide)) return { verdict: 'ignored', reason: 'direction' };
  return { verdict: 'difference', difference, task };
}

/** A key on one side only: a new object to copy, or a replica whose original is gone. */
function oneSided(
  rule: ReplicationRule,
  side: Side,
  object: ObjectState,
  origin: TaskOrigin,
): KeyVerdict {
  const head = headOf(object);
  if (!head) return { verdict: 'needs-metadata', side };
  const created = taskForKey(rule, side, object.key, 'created', origin);
  if (!created) return { verdict: 'ignored', reason: 'excluded' };
  const copy = decision(rule, created, head, undefined);
  if (
    copy.action === 'copy' &&
    rule.deletes === 'mirror' &&
    side === 's3' &&
    isMultipartEtag(head.etag) &&
    head.lastModified.getTime() > Date.parse(origin.eventTime) - RECONCILE_MULTIPART_GRACE_MS
  ) {
    return { verdict: 'ignored', reason: 'recent' };
  }
  if (copy.action === 'copy') {
    return found(rule, side === 's3' ? 'missing-on-azure' : 'missing-on-s3', created);
  }
  if (copy.action !== 'skip' || copy.reason !== 'replica') return { verdict: 'in-sync' };
  // Our intact replica of the other side's key, which is gone: its delete never arrived.
  const other = otherSide(side);
  const deleted = taskForKey(
    rule,
    other,
    destinationKeyOf(rule, side, object.key),
    'deleted',
    origin,
  );
  if (!deleted) return { verdict: 'ignored', reason: 'excluded' };
  const removal = decision(rule, deleted, undefined, head);
  if (removal.action === 'delete') return found(rule, 'deleted', deleted);
  if (removal.action === 'skip' && removal.reason === 'excluded') {
    return { verdict: 'ignored', reason: 'deletes-not-mirrored' };
  }
  return { verdict: 'in-sync' };
}

/**
 * Classifies one key of a rule from what each side holds (`undefined`: nothing there), and
 * names the one task that makes the sides agree: a `created` task from the side whose version
 * the copy step would replicate, or a `deleted` task from the side whose original is gone. The
 * copy step's own decision (`decide`) says which, so the task is decided there exactly as an
 * event's would be; when both directions would copy, the newer Last-Modified wins and a tie
 * goes to `conflictWinner`. A difference the rule's direction, patterns or `deletes` setting do
 * not replicate is `ignored`. Pure.
 */
export function compareKey(
  rule: ReplicationRule,
  pair: { s3?: ObjectState | undefined; azure?: ObjectState | undefined },
  origin: TaskOrigin,
): KeyVerdict {
  const { s3, azure } = pair;
  if (isFolder(s3) || isFolder(azure)) return { verdict: 'ignored', reason: 'folder-marker' };
  if (!s3 && !azure) return { verdict: 'in-sync' };
  if (!s3 && azure) return oneSided(rule, 'azure', azure, origin);
  if (s3 && !azure) return oneSided(rule, 's3', s3, origin);
  if (!s3 || !azure) return { verdict: 'in-sync' };

  const fromS3 = taskForKey(rule, 's3', s3.key, 'created', origin);
  const fromAzure = taskForKey(rule, 'azure', azure.key, 'created', origin);
  if (!fromS3 || !fromAzure) return { verdict: 'ignored', reason: 'excluded' };
  if (agree(rule, s3, azure)) return { verdict: 'in-sync' };
  const s3Head = headOf(s3);
  if (!s3Head) return { verdict: 'needs-metadata', side: 's3' };
  const azureHead = headOf(azure);
  if (!azureHead) return { verdict: 'needs-metadata', side: 'azure' };

  const copies = [
    { task: fromS3, source: s3Head, destination: azureHead },
    { task: fromAzure, source: azureHead, destination: s3Head },
  ].filter(
    (candidate) =>
      decision(rule, candidate.task, candidate.source, candidate.destination).action === 'copy',
  );
  if (copies.length === 0) return { verdict: 'in-sync' };
  const permitted = copies.filter((candidate) => allowed(rule, candidate.task.sourceSide));
  const [first, second] = permitted;
  if (!first) return { verdict: 'ignored', reason: 'direction' };
  let chosen = first;
  if (second) {
    const a = first.source.lastModified.getTime();
    const b = second.source.lastModified.getTime();
    if (b > a || (b === a && second.task.sourceSide === rule.conflictWinner)) chosen = second;
  }
  const { task, destination } = chosen;
  const stale =
    replicaMarkerOf(
      destination,
      rule.name,
      task.sourceSide,
      task.sourceContainer,
      task.sourceKey,
    ) !== undefined;
  return found(rule, stale ? 'stale' : 'diverged', task);
}

/** A side whose deletes are over the limit. */
export interface DeleteStop {
  /** The side the deletes would happen on. */
  side: Side;
  deletes: number;
  /** The objects listed on that side. */
  objects: number;
}

/**
 * The sides on which the deletes a run would send exceed `maxFraction` of the objects listed
 * there (the delete safety stop). Pure.
 */
export function deleteStops(
  listed: Record<Side, number>,
  deletes: Record<Side, number>,
  maxFraction: number,
): DeleteStop[] {
  return (['s3', 'azure'] as const)
    .filter((side) => deletes[side] > maxFraction * listed[side])
    .map((side) => ({ side, deletes: deletes[side], objects: listed[side] }));
}

/** The most deletes the safety stop lets through on a side of `objects` objects. */
export function deleteAllowance(objects: number, maxFraction: number): number {
  return Math.floor(maxFraction * objects);
}
