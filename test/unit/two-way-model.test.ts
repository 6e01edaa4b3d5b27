import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type DecisionTask, decide } from '../../src/core/decide.ts';
import {
  buildNativeMetadata,
  readReplicaMarker,
  sourceRef,
  userMetadataOf,
} from '../../src/core/metadata.ts';
import type { ObjectHead, Side } from '../../src/stores/object-store.ts';

/**
 * A model of the two-way mirror: two in-memory stores, user operations on both sides (writes,
 * overwrites that keep the metadata, copies, ADLS renames, deletes), the events they and the
 * replicator's own writes send (with or without provenance), and the copy step (`decide`,
 * then the write it chose, as run-task does). The events are handled in any order, some more
 * than once. Whatever the interleaving, once every event is handled both sides hold the
 * newest user change of every key, and no user change is copied more than once (but for a
 * write-back, see `handle`).
 */

const RULE = 'mirror';
const CONTAINER: Record<Side, string> = { s3: 'bucket', azure: 'container' };
const KEYS = ['a', 'b', 'c'] as const;
const otherSide = (side: Side): Side => (side === 's3' ? 'azure' : 's3');

interface Stored {
  head: ObjectHead;
  /** What the bytes are. */
  content: number;
  /** The user change the bytes came from. */
  change: number;
}

interface ModelEvent {
  side: Side;
  key: string;
  kind: 'created' | 'deleted';
  etag?: string;
  writtenBy?: 'user' | 'replicator';
  eventTime: string;
}

type Operation =
  | {
      op: 'write';
      side: Side;
      key: string;
      keepMetadata: boolean;
      /** The store shows the MD5 (S3 single-part, Azure Put Blob), or none (multipart). */
      exposeMd5: boolean;
      provenance: boolean;
    }
  | { op: 'delete'; side: Side; key: string; provenance: boolean }
  | { op: 'copy'; side: Side; from: string; to: string; provenance: boolean }
  | { op: 'rename'; from: string; to: string; provenance: boolean }
  | { op: 'handle'; pick: number; again: boolean };

const md5 = (content: number) => createHash('md5').update(String(content)).digest('base64');
const exposes = (stored: Stored) => stored.head.contentMd5 !== undefined;
/**
 * Seconds between users' changes: a few (deletes are compared with whole-second dates, and a
 * write less than two seconds before a delete is kept as possibly racing it). A rewrite that
 * keeps our marker comes later than REPLICA_DATE_WINDOW_MS after the replica's write: sooner,
 * with the replica's size and no MD5 to compare, it is the stated limit of the marker
 * (README, "What it cannot tell apart"). Copies and renames that keep the marker may come at
 * once: the marker names another key.
 */
const USER_PACE_SECONDS = 3;
const MARKER_KEEPING_REWRITE_PACE_SECONDS = 60;

class World {
  #clock = 1_800_000_000;
  #etags = 0;
  #contents = 0;
  #changes = 0;
  readonly stores: Record<Side, Map<string, Stored>> = { s3: new Map(), azure: new Map() };
  readonly pending: ModelEvent[] = [];
  /** Copies made of each user change. */
  readonly copies = new Map<number, number>();
  /** The newest user change of each key: its content, or undefined for a delete. */
  readonly newest = new Map<string, number | undefined>();

  constructor(
    readonly ownEventsHaveProvenance: boolean,
    readonly replicasShowMd5: boolean,
  ) {}

  /** Users act a minute apart; the replicator's writes take a second. */
  #tick(seconds = 1): Date {
    this.#clock += seconds;
    return new Date(this.#clock * 1000);
  }

  #object(
    content: number,
    change: number,
    metadata: Record<string, string>,
    at: Date,
    exposeMd5: boolean,
  ): Stored {
    this.#etags += 1;
    return {
      head: {
        key: '',
        // Two sizes only, so that many rewrites keep the size and the MD5 must tell.
        size: 1 + (content % 2),
        etag: `"e${this.#etags}"`,
        lastModified: at,
        ...(exposeMd5 && { contentMd5: md5(content) }),
        properties: {},
        metadata,
      },
      content,
      change,
    };
  }

  #event(side: Side, key: string, kind: ModelEvent['kind'], writer: ModelEvent['writtenBy']) {
    const etag = this.stores[side].get(key)?.head.etag;
    this.pending.push({
      side,
      key,
      kind,
      ...(kind === 'created' && etag !== undefined && { etag }),
      ...(writer !== undefined && { writtenBy: writer }),
      eventTime: new Date(this.#clock * 1000).toISOString(),
    });
  }

  #userPut(
    side: Side,
    key: string,
    content: number,
    metadata: Record<string, string>,
    exposeMd5: boolean,
    pace = USER_PACE_SECONDS,
  ) {
    const at = this.#tick(pace);
    this.#changes += 1;
    this.stores[side].set(key, this.#object(content, this.#changes, metadata, at, exposeMd5));
    this.newest.set(key, content);
  }

  /** A copy that lands a replica's marker at the very key it names is a marker-keeping rewrite. */
  #paceOfCopy(source: Stored, side: Side, to: string): number {
    const named = readReplicaMarker(source.head.metadata)?.source;
    return named === sourceRef(CONTAINER[otherSide(side)], to)
      ? MARKER_KEEPING_REWRITE_PACE_SECONDS
      : USER_PACE_SECONDS;
  }

  apply(operation: Operation): void {
    const user = (provenance: boolean) => (provenance ? ('user' as const) : undefined);
    switch (operation.op) {
      case 'write': {
        const { side, key } = operation;
        const existing = this.stores[side].get(key);
        this.#contents += 1;
        // rclone and other tools keep the object's metadata, our marker included.
        const metadata = operation.keepMetadata && existing ? { ...existing.head.metadata } : {};
        this.#userPut(
          side,
          key,
          this.#contents,
          metadata,
          operation.exposeMd5,
          operation.keepMetadata ? MARKER_KEEPING_REWRITE_PACE_SECONDS : USER_PACE_SECONDS,
        );
        this.#event(side, key, 'created', user(operation.provenance));
        return;
      }
      case 'delete': {
        const { side, key } = operation;
        if (!this.stores[side].has(key)) return;
        this.#tick(USER_PACE_SECONDS);
        this.stores[side].delete(key);
        this.newest.set(key, undefined);
        this.#event(side, key, 'deleted', user(operation.provenance));
        return;
      }
      case 'copy': {
        // S3 CopyObject or Azure Copy Blob: same bytes, same metadata, another key.
        const { side, from, to } = operation;
        const source = this.stores[side].get(from);
        if (!source || from === to) return;
        this.#userPut(
          side,
          to,
          source.content,
          { ...source.head.metadata },
          exposes(source),
          this.#paceOfCopy(source, side, to),
        );
        this.#event(side, to, 'created', user(operation.provenance));
        return;
      }
      case 'rename': {
        // ADLS Gen2: the file moves with its metadata; one BlobRenamed becomes both events.
        const { from, to } = operation;
        const source = this.stores.azure.get(from);
        if (!source || from === to) return;
        this.#userPut(
          'azure',
          to,
          source.content,
          { ...source.head.metadata },
          exposes(source),
          this.#paceOfCopy(source, 'azure', to),
        );
        this.stores.azure.delete(from);
        this.newest.set(from, undefined);
        this.#event('azure', to, 'created', user(operation.provenance));
        this.#event('azure', from, 'deleted', user(operation.provenance));
        return;
      }
      case 'handle': {
        if (this.pending.length === 0) return;
        const index = operation.pick % this.pending.length;
        const event = this.pending[index] as ModelEvent;
        // A duplicated delivery stays queued and is handled again later.
        if (!operation.again) this.pending.splice(index, 1);
        this.handle(event);
        return;
      }
    }
  }

  /** The plan step and the copy step for one event. */
  handle(event: ModelEvent): void {
    // The plan step skips the events of the replicator's own writes.
    if (event.writtenBy === 'replicator') return;
    const destinationSide = otherSide(event.side);
    const task: DecisionTask = {
      rule: RULE,
      sourceSide: event.side,
      kind: event.kind,
      sourceContainer: CONTAINER[event.side],
      sourceKey: event.key,
      destinationContainer: CONTAINER[destinationSide],
      destinationKey: event.key,
      eventTime: event.eventTime,
      ...(event.writtenBy === 'user' && { writtenBy: 'user' as const }),
      ...(event.etag !== undefined && { etag: event.etag }),
    };
    const source = this.stores[event.side].get(event.key);
    const destination = this.stores[destinationSide].get(event.key);
    const decision = decide({
      task,
      selected: true,
      mirrorDeletes: true,
      tieWinner: 's3',
      source: source?.head,
      destination: destination?.head,
    });
    const own = this.ownEventsHaveProvenance ? ('replicator' as const) : undefined;
    if (decision.action === 'copy' && source) {
      const metadata = buildNativeMetadata(
        destinationSide,
        userMetadataOf(event.side, source.head.metadata),
        {
          origin: event.side,
          sourceEtag: source.head.etag,
          sourceLastModified: source.head.lastModified.toISOString(),
          rule: RULE,
          source: sourceRef(CONTAINER[event.side], event.key),
          size: source.head.size,
          ...(source.head.contentMd5 !== undefined && { contentMd5: source.head.contentMd5 }),
          replicatedAt: new Date((this.#clock + 1) * 1000).toISOString(),
        },
      );
      const at = this.#tick();
      this.stores[destinationSide].set(
        event.key,
        this.#object(source.content, source.change, metadata, at, this.replicasShowMd5),
      );
      // A user deleted the replica while this change's events were still in flight: from live
      // state the copy cannot tell a deleted replica from none, and writes it back; the
      // delete's own task (still queued) then removes both. Not counted as a second copy.
      const writeBack =
        destination === undefined &&
        this.pending.some(
          (queued) =>
            queued.side === destinationSide &&
            queued.key === event.key &&
            queued.kind === 'deleted' &&
            queued.writtenBy !== 'replicator',
        );
      if (!writeBack) this.copies.set(source.change, (this.copies.get(source.change) ?? 0) + 1);
      this.#event(destinationSide, event.key, 'created', own);
    } else if (decision.action === 'delete') {
      this.#tick();
      if (decision.sourceCondition) {
        this.stores[event.side].delete(event.key);
        this.#event(event.side, event.key, 'deleted', own);
      }
      this.stores[destinationSide].delete(event.key);
      this.#event(destinationSide, event.key, 'deleted', own);
    }
  }
}

const side = fc.constantFrom<Side>('s3', 'azure');
const key = fc.constantFrom(...KEYS);
const operation: fc.Arbitrary<Operation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('write' as const),
      side,
      key,
      keepMetadata: fc.boolean(),
      exposeMd5: fc.boolean(),
      provenance: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('delete' as const),
      side,
      key,
      provenance: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('copy' as const),
      side,
      from: key,
      to: key,
      provenance: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('rename' as const),
      from: key,
      to: key,
      provenance: fc.boolean(),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('handle' as const),
      pick: fc.nat(),
      again: fc.boolean(),
    }),
  },
);

describe('Model: two-way mirror under reordered and duplicated events', () => {
  it('ends with both sides equal to the newest user change, each change copied at most once', () => {
    fc.assert(
      fc.property(
        fc.array(operation, { maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 60 }),
        fc.boolean(),
        fc.boolean(),
        (operations, drainOrder, ownEventsHaveProvenance, replicasShowMd5) => {
          const world = new World(ownEventsHaveProvenance, replicasShowMd5);
          for (const step of operations) world.apply(step);
          // Every event still queued is handled, in any order; a ping-pong never drains.
          let handled = 0;
          while (world.pending.length > 0) {
            const pick = drainOrder[handled % Math.max(drainOrder.length, 1)] ?? 0;
            world.apply({ op: 'handle', pick, again: false });
            handled += 1;
            expect(handled, 'the events never stop: a copy loop').toBeLessThan(1_000);
          }
          for (const name of KEYS) {
            const s3 = world.stores.s3.get(name)?.content;
            const azure = world.stores.azure.get(name)?.content;
            expect({ key: name, s3, azure }).toEqual({
              key: name,
              s3: world.newest.get(name),
              azure: world.newest.get(name),
            });
          }
          for (const [change, count] of world.copies) {
            expect(count, `change ${change} copied ${count} times`).toBeLessThanOrEqual(1);
          }
        },
      ),
      { numRuns: Number(process.env.MODEL_RUNS ?? 2_000) },
    );
  });
});
