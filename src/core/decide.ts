import { compareSequencers } from '../events/object-event.ts';
import type { ObjectHead, Side, WriteCondition } from '../stores/object-store.ts';
import { readReplicaMarker } from './metadata.ts';

/** Why a task ended without writing anything. */
export type SkipReason =
  | 'replica'
  | 'up-to-date'
  | 'stale'
  | 'diverged'
  | 'excluded'
  | 'source-gone';

export type Decision =
  | { action: 'copy'; condition: WriteCondition; conflict: boolean }
  | { action: 'delete'; condition: WriteCondition }
  | { action: 'skip'; reason: SkipReason; detail: string };

/** What the decision needs to know about the task and the rule. */
export interface DecisionInput {
  /** The side the change happened on. */
  sourceSide: Side;
  kind: 'created' | 'deleted';
  /** The event's per-key sequencer, when it had one. */
  sequencer?: string;
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
}

const skip = (reason: SkipReason, detail: string): Decision => ({ action: 'skip', reason, detail });

function conditionFor(destination: ObjectHead | undefined): WriteCondition {
  return destination ? { kind: 'match', etag: destination.etag } : { kind: 'absent' };
}

/**
 * Rule 2: the object is a replica the replicator wrote from the other side (copying it back
 * would loop). A user's overwrite removes the marker, so it is no longer one.
 */
export function isReplicaFromOtherSide(head: ObjectHead, side: Side): boolean {
  const marker = readReplicaMarker(head.metadata);
  return marker !== undefined && marker.origin !== side;
}

/**
 * Decides what one task does, from the live state of both stores (DESIGN.md section 2):
 * copy (conditional on the destination state seen here), delete (likewise), or skip with a
 * reason. Pure; the caller re-reads both sides and decides again after a 412.
 */
export function decide(input: DecisionInput): Decision {
  const { source, destination, sourceSide } = input;
  if (!input.selected) return skip('excluded', 'the rule does not replicate this key this way');
  const destinationMarker = destination ? readReplicaMarker(destination.metadata) : undefined;
  const destinationIsOurReplica = destinationMarker?.origin === sourceSide;

  if (input.kind === 'deleted') {
    if (!input.mirrorDeletes) return skip('excluded', 'the rule does not mirror deletes');
    if (source) return skip('stale', 'the source exists again; its own event replicates it');
    if (!destination) return skip('up-to-date', 'the destination is already absent');
    // Rule 7: delete only what is still our replica; a user's own write there is kept.
    if (!destinationIsOurReplica) {
      return skip('diverged', 'the destination was written by someone else since; kept');
    }
    return { action: 'delete', condition: { kind: 'match', etag: destination.etag } };
  }

  if (!source) return skip('source-gone', 'the source no longer exists');
  // Rule 2: the source is itself a replica written by us; copying it back would loop.
  if (isReplicaFromOtherSide(source, sourceSide)) {
    return skip(
      'replica',
      `the source is a replica of the ${sourceSide === 's3' ? 'azure' : 's3'} side`,
    );
  }
  if (!destination) return { action: 'copy', condition: { kind: 'absent' }, conflict: false };

  if (destinationIsOurReplica && destinationMarker) {
    // Rule 3: already holds this version.
    if (destinationMarker.sourceEtag === source.etag) {
      return skip('up-to-date', 'the destination already holds this version');
    }
    // Rule 4: never replace a newer replica with an older source version.
    if (
      input.sequencer !== undefined &&
      destinationMarker.sourceSequencer !== undefined &&
      compareSequencers(input.sequencer, destinationMarker.sourceSequencer) < 0
    ) {
      return skip('stale', 'the destination holds a replica of a newer change');
    }
    if (Date.parse(destinationMarker.sourceLastModified) > source.lastModified.getTime()) {
      return skip('stale', 'the destination holds a replica of a newer source version');
    }
    return { action: 'copy', condition: conditionFor(destination), conflict: false };
  }

  // Both sides were written by users: the newer write wins, a tie goes to the configured side.
  const sourceTime = source.lastModified.getTime();
  const destinationTime = destination.lastModified.getTime();
  if (
    sourceTime > destinationTime ||
    (sourceTime === destinationTime && input.tieWinner === sourceSide)
  ) {
    return { action: 'copy', condition: conditionFor(destination), conflict: true };
  }
  return skip('stale', 'the destination was written later (conflict: the newer write wins)');
}
