import { randomUUID } from 'node:crypto';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import fc from 'fast-check';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import type { ReplicationRule } from '../../src/config/schema.ts';
import { PullMemory } from '../../src/copy/pull-memory.ts';
import { runCopyTask } from '../../src/copy/run-task.ts';
import { type CopyTask, routeEvents } from '../../src/core/route.ts';
import { RetryableError } from '../../src/errors.ts';
import { parseEventGridDelivery } from '../../src/events/event-grid.ts';
import type { ObjectEvent } from '../../src/events/object-event.ts';
import { parseS3Notification } from '../../src/events/s3-notification.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import type { ObjectHead, ObjectStore, Side, SmallObject } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import {
  emulatorEnv,
  makeBlobServiceClient,
  makeS3Client,
  uniqueName,
} from '../support/emulators.ts';
import {
  blobEvent,
  nextAzureSequencer,
  nextS3Sequencer,
  s3Notification,
  s3Record,
} from '../support/notifications.ts';
import { readAll } from '../support/streams.ts';

/**
 * Ordering (reliability issue, item 4): users write, overwrite (some keeping the object's
 * metadata, replica marker included, as rclone does) and delete a few keys on both sides of
 * real stores (the S3 emulator and Azurite). Every change, the users' and the replicator's own,
 * sends the event its store would send; those events are handled by `runCopyTask` in any
 * order, some twice, some long after later changes, some collapsed in one batch. Once none is
 * left, both sides hold the newest user change of every key (or, for changes made within a
 * second of each other, the same one of them), no change was copied twice, and the echo of
 * every replica was skipped.
 *
 * Time. Stores date objects in whole seconds, and the product compares dates for true
 * conflicts and for deletes (README, "Who wrote it"). Users here act `USER_PACE_MS` apart, as
 * people do, or now and then within the same second (`soon`: then either change may win, but
 * both sides must agree). To keep the test fast and deterministic that time is virtual: the
 * test process's `Date` is stopped and moved on only by the test (each user change, each
 * delivery `DELIVERY_MS`), so event times and the replica marker's `replicatedAt` are virtual,
 * and every store the replicator sees reports each version's Last-Modified as the virtual
 * whole second it was written in (`VirtualDates`). Bytes, eTags, MD5s, metadata and
 * conditional writes are the emulators' own.
 *
 * Queues. An event is handled alone, or in a batch with the other queued events of its key and
 * side, collapsed by the plan step's own `routeEvents` (one task per kind). A delete the copy
 * step holds (a delete in doubt, `decide`) comes back as a task with `held`, over once every
 * event queued before it was held has been delivered: the real hold (DELETE_HOLD_SECONDS)
 * outlasts the delivery of the events in flight.
 *
 * Provenance. Users' events carry their writer or not (a generated flag, as with S3 straight or
 * through EventBridge). The replicator's own events never do: they reach the copy step instead
 * of being dropped by the plan step, as with EventBridge or SFTP, so a loop would show.
 */

const KEYS = ['a', 'b', 'c'] as const;
type Key = (typeof KEYS)[number];
const USER_PACE_MS = 3_000;
/** Virtual time between a user's change and the next one when the step says `soon`. */
const SOON_MS = 200;
/** Virtual time each delivery takes: a step's few stay in its second, a drain crosses seconds. */
const DELIVERY_MS = 150;
/** More deliveries than this in one run is a copy loop (runs here need at most about 30). */
const MAX_DELIVERIES = 150;
const USER_PRINCIPAL = 'AWS:AIDAORDERINGUSER';
const OWN_PRINCIPALS = ['AWS:LOCALREPLICATORORDERING'];
const otherSide = (side: Side): Side => (side === 's3' ? 'azure' : 's3');

let raw: Record<Side, ObjectStore>;
let accountUrl: string;

beforeAll(async () => {
  const client = makeS3Client();
  const bucket = uniqueName('order');
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const container = makeBlobServiceClient().getContainerClient(uniqueName('order'));
  await container.create();
  raw = { s3: new S3ObjectStore(client, bucket), azure: new AzureBlobObjectStore(container) };
  accountUrl = emulatorEnv().azureAccountUrl;
});

afterEach(() => {
  vi.useRealTimers();
});

function ruleOf(deletes: 'mirror' | 'ignore', conflictWinner: Side): ReplicationRule {
  const [only] = validateConfig({
    rules: [
      {
        name: 'ordering',
        deletes,
        conflictWinner,
        direction: 'both',
        s3: { bucket: raw.s3.container },
        azure: { accountUrl, container: raw.azure.container },
      },
    ],
  }).rules;
  if (!only) throw new Error('no rule');
  return only;
}

const unquote = (etag: string) => etag.replace(/"/g, '');

/**
 * Last-Modified in virtual time: each version (side, key, eTag) is dated from the virtual
 * whole second it was written in, as a store dates it from its own clock.
 */
class VirtualDates {
  readonly #stamps = new Map<string, Date>();
  /** Versions seen that no write stamped (should stay 0). */
  unstamped = 0;

  #id(side: Side, key: string, etag: string) {
    return `${side}\n${key}\n${unquote(etag)}`;
  }

  stamp(side: Side, key: string, etag: string): void {
    this.#stamps.set(this.#id(side, key, etag), new Date(Math.floor(Date.now() / 1000) * 1000));
  }

  dateOf(side: Side, key: string, etag: string): Date {
    const id = this.#id(side, key, etag);
    let date = this.#stamps.get(id);
    if (!date) {
      this.unstamped += 1;
      date = new Date(Math.floor(Date.now() / 1000) * 1000);
      this.#stamps.set(id, date);
    }
    return date;
  }

  /** `store`, with heads dated in virtual time and writes stamped. */
  wrap(store: ObjectStore): ObjectStore {
    const dates = this;
    return new Proxy(store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        const call = (...args: unknown[]) =>
          (value as (...a: unknown[]) => unknown).apply(target, args);
        if (property === 'head') {
          return async (...args: unknown[]) => {
            const head = (await call(...args)) as ObjectHead | undefined;
            if (!head) return head;
            return { ...head, lastModified: dates.dateOf(target.side, head.key, head.etag) };
          };
        }
        if (property === 'getSmall') {
          // One GET's head, dated like HEAD's.
          return async (...args: unknown[]) => {
            const read = (await call(...args)) as SmallObject | undefined;
            if (!read) return read;
            const { head } = read;
            return {
              ...read,
              head: { ...head, lastModified: dates.dateOf(target.side, head.key, head.etag) },
            };
          };
        }
        if (property === 'put' || property === 'commitStaged' || property === 'putFromUrl') {
          return async (...args: unknown[]) => {
            const result = await call(...args);
            // Whatever the write returned, date the version now there from this moment.
            const first = args[0];
            const key = typeof first === 'string' ? first : (first as { key: string }).key;
            const now = await target.head(key);
            if (now) dates.stamp(target.side, key, now.etag);
            return result;
          };
        }
        return call;
      },
    });
  }
}

/** The second a time falls in: stores date objects in whole seconds. */
const secondOf = (time: number) => Math.floor(time / 1000);

type UserOp =
  | { op: 'write'; side: Side; key: Key; keepMetadata: boolean }
  | { op: 'delete'; side: Side; key: Key }
  /** Both sides written in the same second, `first` first. */
  | { op: 'conflict'; first: Side; key: Key; keepMetadata: [boolean, boolean] };

interface Delivery {
  pick: number;
  /** Delivered, and left queued to be delivered again later. */
  again: boolean;
  /** Delivered in one batch with the other queued events of its key and side. */
  batch: boolean;
}

interface Step {
  user: UserOp;
  /** The user's change follows the previous one within the same second (`SOON_MS`). */
  soon: boolean;
  /** Events delivered after this user operation, before the next. */
  deliveries: Delivery[];
}

interface Pending {
  /** Order of arrival in the queue. */
  seq: number;
  /** The notification as the plan step gets it. */
  event: ObjectEvent;
  /** Its task, routed alone. */
  task: CopyTask;
  side: Side;
  key: string;
  kind: 'created' | 'deleted';
  /** The event of a write or delete the replicator made. */
  echo: boolean;
  /** The version a created event announced. */
  etag?: string;
  label: string;
  /**
   * A delete the copy step held on this destination version, sent again: a task, not an
   * event (no batch takes it), delivered once no event queued before it is left.
   */
  held?: string;
}

interface Change {
  content: string | undefined;
  at: number;
  loser?: string;
}

interface Scenario {
  steps: Step[];
  drain: number[];
  provenance: boolean;
  conflictWinner: Side;
}

/** One run: its own key prefix, its own virtual clock, its own queue of events. */
class World {
  readonly dates = new VirtualDates();
  readonly stores: Record<Side, ObjectStore>;
  readonly pending: Pending[] = [];
  /** Copies of each user change (its content), write-backs excluded. */
  readonly copies = new Map<string, number>();
  /**
   * The user changes of each key, oldest first: content (undefined: a delete), time, and for a
   * conflict the content that lost the tie.
   */
  readonly changes = new Map<string, Change[]>();
  /** Every delivery, in order, for the failure message. */
  readonly log: string[] = [];
  readonly problems: string[] = [];
  /** Keys a user deleted, as `side\nkey`. */
  readonly userDeleted = new Set<string>();
  #writes = 0;
  #events = 0;
  #deliveries = 0;

  constructor(
    readonly rule: ReplicationRule,
    readonly prefix: string,
    readonly provenance: boolean,
  ) {
    this.stores = { s3: this.dates.wrap(raw.s3), azure: this.dates.wrap(raw.azure) };
  }

  keyOf(key: Key) {
    return `${this.prefix}/${key}`;
  }

  #changed(key: string, content: string | undefined, loser?: string) {
    const list = this.changes.get(key) ?? [];
    list.push({ content, at: Date.now(), ...(loser !== undefined && { loser }) });
    this.changes.set(key, list);
  }

  /**
   * What both sides may end with: the newest user change, or any change made within a whole
   * second of it (dated in the same or the next second, their order cannot be told apart:
   * `decide` holds a delete in doubt and lets a write it cannot place before the delete win).
   * Empty when no user touched the key.
   */
  accepted(key: string): Set<string | undefined> {
    const list = this.changes.get(key) ?? [];
    const close: Change[] = [];
    for (const change of [...list].reverse()) {
      const later = close.at(-1);
      if (later && secondOf(later.at) - secondOf(change.at) > 1) break;
      close.push(change);
    }
    // A conflict alone is a tie the rule's conflictWinner wins; near another change, either.
    return new Set(
      close.flatMap((change) => [
        change.content,
        ...(close.length > 1 && change.loser !== undefined ? [change.loser] : []),
      ]),
    );
  }

  /** The notification the store would send, through the parser and the router (plan step). */
  #emit(
    side: Side,
    key: string,
    kind: 'created' | 'deleted',
    head: ObjectHead | undefined,
    echo: boolean,
  ) {
    const user = !echo && this.provenance;
    let events: ObjectEvent[];
    if (side === 's3') {
      const record = s3Record(
        kind === 'created' ? 'ObjectCreated:Put' : 'ObjectRemoved:Delete',
        raw.s3.container,
        key,
        {
          ...(kind === 'created' && head && { etag: head.etag, size: head.size }),
          sequencer: nextS3Sequencer(),
        },
        user ? USER_PRINCIPAL : null,
      );
      events = parseS3Notification(s3Notification(record), {
        ownS3Principals: OWN_PRINCIPALS,
      }).events;
    } else {
      const event = blobEvent(
        kind === 'created' ? 'Microsoft.Storage.BlobCreated' : 'Microsoft.Storage.BlobDeleted',
        accountUrl,
        raw.azure.container,
        key,
        {
          ...(kind === 'created' && head && { etag: head.etag, size: head.size }),
          sequencer: nextAzureSequencer(),
          clientRequestId: user ? randomUUID() : null,
        },
      );
      events = parseEventGridDelivery([event]).events;
    }
    const { tasks } = routeEvents([this.rule], events);
    expect(tasks, `the router makes one task of ${side} ${kind} ${key}`).toHaveLength(1);
    expect(events).toHaveLength(1);
    this.#events += 1;
    const label = `#${this.#events} ${echo ? 'echo' : 'user'} ${kind} ${side}:${key.slice(this.prefix.length + 1)}${kind === 'created' && head ? ` ${unquote(head.etag).slice(0, 10)}` : ''}`;
    this.pending.push({
      seq: this.#events,
      event: events[0] as ObjectEvent,
      task: tasks[0] as CopyTask,
      side,
      key,
      kind,
      echo,
      ...(kind === 'created' && head && { etag: head.etag }),
      label,
    });
  }

  async user(operation: UserOp, soon: boolean): Promise<void> {
    // Users act seconds apart (virtual time, see above), each at the start of a whole second
    // (so that both writes of a conflict fall in the same second), or soon after the last.
    vi.setSystemTime(
      soon ? Date.now() + SOON_MS : Math.ceil((Date.now() + USER_PACE_MS) / 1000) * 1000 + 100,
    );
    const key = this.keyOf(operation.key);
    if (operation.op === 'delete') {
      if (!(await raw[operation.side].head(key))) return;
      await this.stores[operation.side].delete(key, { condition: { kind: 'any' } });
      this.#changed(key, undefined);
      this.userDeleted.add(`${operation.side}\n${key}`);
      this.log.push(`user deletes ${operation.side}:${operation.key}`);
      this.#emit(operation.side, key, 'deleted', undefined, false);
      return;
    }
    if (operation.op === 'write') {
      this.#changed(key, await this.#write(operation.side, operation.key, operation.keepMetadata));
      return;
    }
    // A true conflict: both sides written by users in the same second, no event handled in
    // between. A tie: the rule's conflictWinner wins (README, "Newest wins").
    const second = otherSide(operation.first);
    const written = {
      [operation.first]: await this.#write(
        operation.first,
        operation.key,
        operation.keepMetadata[0],
      ),
      [second]: await this.#write(second, operation.key, operation.keepMetadata[1]),
    } as Record<Side, string>;
    this.#changed(
      key,
      written[this.rule.conflictWinner],
      written[otherSide(this.rule.conflictWinner)],
    );
  }

  /** A user's write of new content; returns the content. */
  async #write(side: Side, name: Key, keepMetadata: boolean): Promise<string> {
    const key = this.keyOf(name);
    this.#writes += 1;
    // Unique content of varying length: a rewrite never has its replica's bytes.
    const content = `${this.prefix}/${name} w${this.#writes} ${'x'.repeat(this.#writes % 5)}`;
    const existing = keepMetadata ? await raw[side].head(key) : undefined;
    await this.stores[side].put(key, Buffer.from(content), {
      properties: {},
      // rclone keeps an object's metadata when it rewrites it, our marker included.
      metadata: { ...(existing?.metadata ?? {}) },
      condition: { kind: 'any' },
    });
    this.log.push(
      `user writes ${side}:${name} w${this.#writes}${existing ? ' (keeping metadata)' : ''} at ${new Date().toISOString()}`,
    );
    this.#emit(side, key, 'created', await raw[side].head(key), false);
    return content;
  }

  async #contentOf(side: Side, key: string): Promise<string | undefined> {
    if (!(await raw[side].head(key))) return undefined;
    return (await readAll((await raw[side].get(key)).body)).toString();
  }

  /** Whether a queued message can be delivered: a held delete waits for the events before it. */
  #ready(queued: Pending): boolean {
    return (
      queued.held === undefined ||
      !this.pending.some((other) => other.held === undefined && other.seq < queued.seq)
    );
  }

  /**
   * Delivers the `pick`th deliverable message (modulo their number): the plan step's output
   * reaches the copy step, `runCopyTask` on the real stores. `again`: it stays queued, to be
   * delivered again later (a duplicate). `batch`: the plan step gets every queued event of its
   * key on its side and collapses them with `routeEvents`; its task of the picked event's kind
   * (or else its other task) runs now, the other kind's stays queued (a task the plan step sent).
   */
  async deliver(pick: number, again: boolean, batch = false): Promise<void> {
    const ready = this.pending.filter((queued) => this.#ready(queued));
    const picked = ready[pick % ready.length];
    if (!picked) return;
    vi.setSystemTime(Date.now() + DELIVERY_MS);
    this.#deliveries += 1;
    if (this.#deliveries > MAX_DELIVERIES) {
      throw new Error(`events never stop (a copy loop):\n${this.log.slice(-40).join('\n')}`);
    }
    let entry = picked;
    let gone = [picked];
    if (batch && picked.held === undefined) {
      const events = this.pending.filter(
        (queued) =>
          queued.held === undefined && queued.side === picked.side && queued.key === picked.key,
      );
      const kept = new Set(
        routeEvents(
          [this.rule],
          events.map((queued) => queued.event),
        ).tasks,
      );
      const taskOf = (queued: Pending) =>
        [...kept].find(
          (task) => task.correlationId === queued.event.id && task.kind === queued.kind,
        );
      const sent = events.filter((queued) => taskOf(queued) !== undefined);
      const first = sent.find((queued) => queued.kind === picked.kind) ?? sent[0];
      if (!first) throw new Error(`the plan step made no task of ${picked.label}`);
      entry = first;
      // Superseded events go with the batch; the other kind's task stays queued.
      gone = events.filter((queued) => queued.kind === first.kind || !taskOf(queued));
      if (events.length > 1) {
        this.log.push(
          `batch of ${events.map((queued) => queued.label).join(', ')} -> ${[...kept].map((task) => events.find((queued) => queued.event.id === task.correlationId)?.label).join(', ')}`,
        );
      }
    }
    if (!again) {
      for (const queued of gone) this.pending.splice(this.pending.indexOf(queued), 1);
    }
    const { task } = entry;
    const sourceSide = task.sourceSide;
    const destinationSide = otherSide(sourceSide);
    const before = {
      source: await raw[sourceSide].head(task.sourceKey),
      destination: await raw[destinationSide].head(task.destinationKey),
    };
    let outcome: Awaited<ReturnType<typeof runCopyTask>>;
    try {
      outcome = await runCopyTask(task, {
        rule: this.rule,
        source: this.stores[sourceSide],
        destination: this.stores[destinationSide],
        pullMemory: new PullMemory(),
        ...(entry.held !== undefined && { held: { etag: entry.held, over: true } }),
      });
    } catch (error) {
      if (!(error instanceof RetryableError)) throw error;
      // The message comes back later: the same task, retried.
      this.log.push(`${entry.label}: retry (${error.message})`);
      if (!again) this.pending.push(entry);
      return;
    }
    const summary =
      outcome.action === 'skipped' ? `skipped ${outcome.reason}` : String(outcome.action);
    this.log.push(
      `deliver ${entry.label}${again ? ' (kept queued: delivered again later)' : ''} at ${new Date().toISOString()} -> ${summary}`,
    );
    if (outcome.action === 'held') {
      if (entry.held !== undefined) {
        this.problems.push(`${entry.label}: held again after its hold was over`);
      }
      // The real pipeline sends the task again with `hold` (src/queue/task-record.ts).
      this.#events += 1;
      this.pending.push({
        ...entry,
        seq: this.#events,
        held: outcome.etag,
        label: `${entry.label} (held)`,
      });
      return;
    }
    const after = {
      source: await raw[sourceSide].head(task.sourceKey),
      destination: await raw[destinationSide].head(task.destinationKey),
    };

    // The echo of a replica, while the replica is still there, is skipped.
    if (entry.echo && entry.kind === 'created' && before.source?.etag === entry.etag) {
      if (
        outcome.action !== 'skipped' ||
        (outcome.reason !== 'replica' && outcome.reason !== 'up-to-date')
      ) {
        this.problems.push(`${entry.label}: the echo of a replica was not skipped: ${summary}`);
      }
    }
    if (entry.echo && entry.kind === 'deleted' && outcome.action === 'deleted') {
      this.problems.push(`${entry.label}: the echo of the replicator's delete deleted again`);
    }

    // Each change the replicator made sends its own event (no provenance: see above).
    const changed = (was: ObjectHead | undefined, now: ObjectHead | undefined) =>
      was?.etag !== now?.etag;
    if (changed(before.destination, after.destination)) {
      if (after.destination) {
        const content = await this.#contentOf(destinationSide, task.destinationKey);
        // A copy that wrote back a replica a user deleted while this change's events were
        // still queued: the delete's own task removes both (README, "What it cannot tell
        // apart"). Not a second copy.
        // With deletes ignored, no task removes it again: any copy into a key a user
        // deleted is such a write-back.
        const writeBack =
          before.destination === undefined &&
          (this.rule.deletes === 'ignore'
            ? this.userDeleted.has(`${destinationSide}\n${task.destinationKey}`)
            : this.pending.some(
                (queued) =>
                  !queued.echo &&
                  queued.kind === 'deleted' &&
                  queued.side === destinationSide &&
                  queued.key === task.destinationKey,
              ));
        if (content !== undefined && !writeBack) {
          this.copies.set(content, (this.copies.get(content) ?? 0) + 1);
        }
        this.#emit(destinationSide, task.destinationKey, 'created', after.destination, true);
      } else {
        this.#emit(destinationSide, task.destinationKey, 'deleted', undefined, true);
      }
    }
    if (changed(before.source, after.source)) {
      // Only a delete of a written-back replica changes the source.
      this.#emit(
        sourceSide,
        task.sourceKey,
        after.source ? 'created' : 'deleted',
        after.source,
        true,
      );
    }
  }

  async drain(order: number[]): Promise<void> {
    // Bounded: every delivery counts against MAX_DELIVERIES, and one is always ready.
    for (let handled = 0; this.pending.length > 0; handled++) {
      await this.deliver(order.length === 0 ? 0 : (order[handled % order.length] ?? 0), false);
    }
  }

  async state(key: string) {
    return {
      s3: await this.#contentOf('s3', key),
      azure: await this.#contentOf('azure', key),
    };
  }
}

const sideArb = fc.constantFrom<Side>('s3', 'azure');
const keyArb = (keys: number) => fc.constantFrom(...KEYS.slice(0, keys));
const userOpArb = (keys: number): fc.Arbitrary<UserOp> =>
  fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('write' as const),
        side: sideArb,
        key: keyArb(keys),
        keepMetadata: fc.boolean(),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        op: fc.constant('delete' as const),
        side: sideArb,
        key: keyArb(keys),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('conflict' as const),
        first: sideArb,
        key: keyArb(keys),
        keepMetadata: fc.tuple(fc.boolean(), fc.boolean()),
      }),
    },
  );
const deliveryArb: fc.Arbitrary<Delivery> = fc.record({
  pick: fc.nat(),
  // One delivery in four is a duplicate: handled now and again later.
  again: fc.nat({ max: 3 }).map((n) => n === 0),
  batch: fc.nat({ max: 3 }).map((n) => n === 0),
});
const scenarioArb: fc.Arbitrary<Scenario> = fc.integer({ min: 2, max: 3 }).chain((keys) =>
  fc.record({
    steps: fc.array(
      fc.record({
        user: userOpArb(keys),
        // One change in three follows the last within the same second.
        soon: fc.nat({ max: 2 }).map((n) => n === 0),
        deliveries: fc.array(deliveryArb, { maxLength: 3 }),
      }),
      { minLength: 5, maxLength: 12 },
    ),
    drain: fc.array(fc.nat(), { maxLength: 20 }),
    provenance: fc.boolean(),
    conflictWinner: sideArb,
  }),
);

/** Plays a scenario; returns the world after every event was delivered. */
async function play(scenario: Scenario, deletes: 'mirror' | 'ignore'): Promise<World> {
  // Each run starts its virtual clock at the wall clock (the SDKs sign requests with it).
  vi.setSystemTime(vi.getRealSystemTime());
  const world = new World(
    ruleOf(deletes, scenario.conflictWinner),
    uniqueName('run'),
    scenario.provenance,
  );
  for (const step of scenario.steps) {
    await world.user(step.user, step.soon);
    for (const delivery of step.deliveries) {
      await world.deliver(delivery.pick, delivery.again, delivery.batch);
    }
  }
  await world.drain(scenario.drain);
  return world;
}

function explain(world: World): string {
  return `\n${world.log.join('\n')}`;
}

/** Both sides agree on the key, and hold a change the users may have last made. */
async function checkKey(world: World, name: Key, deletes: 'mirror' | 'ignore') {
  const key = world.keyOf(name);
  const accepted = world.accepted(key);
  // With deletes ignored, a key whose last change may be a delete can end either way.
  if (accepted.size === 0 || (deletes === 'ignore' && accepted.has(undefined))) return;
  const state = await world.state(key);
  expect(state.s3, `${name}: both sides agree${explain(world)}`).toBe(state.azure);
  expect(
    [...accepted],
    `${name}: what both sides hold is the users' last change${explain(world)}`,
  ).toContain(state.s3);
}

function checkNoPingPong(world: World) {
  expect(world.problems, explain(world)).toEqual([]);
  for (const [content, count] of world.copies) {
    expect(count, `"${content}" copied ${count} times${explain(world)}`).toBeLessThanOrEqual(1);
  }
  expect(world.dates.unstamped, 'versions no write dated').toBe(0);
}

/**
 * Found by this test (the plan step then collapsed a batch's tasks of one key to the newest):
 * a user writes azure:a, and its event is copied and stays queued; a user deletes s3:a; the
 * Azure event, delivered again, writes s3:a back; one batch then holds the user's delete of
 * s3:a and the write-back's event, whose task alone ran and skipped (`replica`), so the
 * delete was lost. The batch now keeps one task of each kind.
 */
const DELETE_BATCHED_WITH_WRITE_BACK: Scenario = {
  steps: [
    {
      user: { op: 'write', side: 'azure', key: 'a', keepMetadata: false },
      soon: false,
      deliveries: [{ pick: 0, again: true, batch: false }],
    },
    {
      user: { op: 'delete', side: 's3', key: 'a' },
      soon: false,
      // Queued: the user's write of azure:a, the copy's event, the user's delete. The write is
      // delivered again (write-back), then the delete is picked in a batch.
      deliveries: [
        { pick: 0, again: false, batch: false },
        { pick: 1, again: false, batch: true },
      ],
    },
  ],
  drain: [],
  provenance: false,
  conflictWinner: 's3',
};

/**
 * Fixed, so that `npm test` is deterministic: a failure prints this seed and the
 * counterexample's path, and `ORDERING_SEED=<seed> ORDERING_RUNS=<n>` replays or hunts further.
 */
const SEED = Number(process.env.ORDERING_SEED ?? 20261130);
const runs = (fallback: number) => Number(process.env.ORDERING_RUNS ?? fallback);
/** A run takes about a second; one that takes this long is stuck (fast-check fails it). */
const RUN_TIMEOUT_MS = 20_000;
/**
 * fast-check stops after this (running, or shrinking a failure: each shrink replays a scenario
 * on the stores) and reports the seed and the smallest counterexample found so far.
 */
const timeLimitOf = (fallback: number) => 10_000 + runs(fallback) * 1_500;
/** Shrinks tried at most, so a failure ends in a report, not in hours of replays. */
const MAX_SHRINKS = 60;

async function checkProperty(
  deletes: 'mirror' | 'ignore',
  fallbackRuns: number,
  examples: Scenario[] = [],
) {
  await fc.assert(
    fc.asyncProperty(fc.limitShrink(scenarioArb, MAX_SHRINKS), async (scenario) => {
      const world = await play(scenario, deletes);
      for (const name of KEYS) await checkKey(world, name, deletes);
      checkNoPingPong(world);
    }),
    {
      examples: examples.map((scenario) => [scenario]),
      seed: SEED,
      numRuns: runs(fallbackRuns),
      timeout: RUN_TIMEOUT_MS,
      interruptAfterTimeLimit: timeLimitOf(fallbackRuns),
      markInterruptAsFailure: true,
    },
  );
}

const MIRROR_RUNS = 16;
const IGNORE_RUNS = 6;
/** The test's own limit: fast-check's, and one stuck run on top. */
const testTimeoutOf = (fallback: number) => timeLimitOf(fallback) + RUN_TIMEOUT_MS + 5_000;

describe('Ordering: duplicated, delayed and reordered events on real stores', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
  });

  it(
    'with deletes mirrored, both sides converge to the newest user change, each copied at most once',
    () => checkProperty('mirror', MIRROR_RUNS, [DELETE_BATCHED_WITH_WRITE_BACK]),
    testTimeoutOf(MIRROR_RUNS),
  );

  it(
    'with deletes ignored, every key last written converges to that write, each copied at most once',
    () => checkProperty('ignore', IGNORE_RUNS),
    testTimeoutOf(IGNORE_RUNS),
  );
});
