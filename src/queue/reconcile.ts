import { randomBytes } from 'node:crypto';
import type { SQSClient } from '@aws-sdk/client-sqs';
import * as z from 'zod';
import type { ReplicationRule } from '../config/schema.ts';
import { runPool } from '../copy/pool.ts';
import {
  type CursorState,
  KEY_ORDERS,
  type KeyOrder,
  type KeyPair,
  ListingMerge,
} from '../core/listing-merge.ts';
import {
  compareKey,
  type DeleteStop,
  DIFFERENCE_KINDS,
  type DifferenceKind,
  deleteAllowance,
  deleteStops,
  destinationSideOf,
  IGNORED_REASONS,
  type IgnoredReason,
  type KeyVerdict,
  type ObjectState,
} from '../core/reconcile.ts';
import { type CopyTask, taskForKey } from '../core/route.ts';
import { PermanentError } from '../errors.ts';
import { EventParseError } from '../events/object-event.ts';
import type { ListPage, ObjectStore, Side } from '../stores/object-store.ts';
import { sendAll } from './sqs.ts';

/** Keys per listing page on both sides (S3 lists at most 1,000 a request). */
export const RECONCILE_PAGE_SIZE = 1000;
/** HEADs in flight at once, for the objects whose metadata decides (S3 listings carry none). */
export const RECONCILE_HEAD_CONCURRENCY = 16;
/**
 * The most a follow-up message may take (SQS takes 1 MiB; the events queue is set to it). It
 * carries page tokens and the keys that wait for the other side's listing: about a page.
 */
export const RECONCILE_MESSAGE_BUDGET = 900 * 1024;
/**
 * How long a plan invocation goes on with a reconcile run before it passes the run on in a
 * follow-up message: the other events of its batch wait meanwhile.
 */
export const RECONCILE_SLICE_IN_PLAN_SECONDS = 60;
// Pages listed past the stop to bring the waiting keys under the budget before giving up.
const OVER_BUDGET_PAGES = 20;
/**
 * Deletes found while listing that a run keeps (their keys) to send once the rule is counted,
 * without listing it again; beyond this many, or `HELD_DELETE_BYTES` of keys, it lists again.
 */
export const RECONCILE_HELD_DELETES = 1000;
const HELD_DELETE_BYTES = 200 * 1024;
const SEND_CHUNK = 50;
const SEND_CONCURRENCY = 4;
const SIDES = ['s3', 'azure'] as const;

const sideCounts = z.strictObject({ s3: z.number().int().min(0), azure: z.number().int().min(0) });

const countsSchema = z.strictObject({
  listed: sideCounts,
  inSync: z.number().int().min(0),
  ignored: z.record(
    z.enum(IGNORED_REASONS as [IgnoredReason, ...IgnoredReason[]]),
    z.number().int().min(0),
  ),
  differences: z.record(
    z.enum(DIFFERENCE_KINDS as [DifferenceKind, ...DifferenceKind[]]),
    z.number().int().min(0),
  ),
  /** Deletes found, by the side they would happen on. */
  deletes: sideCounts,
  /** Tasks stored in the tasks queue (copies and deletes). */
  tasksSent: z.number().int().min(0),
  deletesSent: sideCounts,
  /** Deletes not sent: held back by the safety stop (or, in a dry run, that it would hold). */
  deletesWithheld: z.number().int().min(0),
  /** The sides whose deletes were over `maxDeleteFraction` when the safety stop held them. */
  deleteStops: z.array(
    z.strictObject({
      side: z.enum(['s3', 'azure']),
      deletes: z.number().int().min(0),
      objects: z.number().int().min(0),
    }),
  ),
});

const sideListing = z.strictObject({
  /** The token of the next page to list; absent for the first page. */
  token: z.string().min(1).optional(),
  done: z.boolean(),
  orders: z.array(z.enum(KEY_ORDERS as [KeyOrder, ...KeyOrder[]])).min(1),
  last: z.string().optional(),
  /** Keys listed on this side that wait for the other side's listing (read again by HEAD). */
  pending: z.array(z.string().min(1)),
});

const stateSchema = z.strictObject({
  request: z.strictObject({
    runId: z.string().min(1),
    /** The rules to reconcile, by name, in order. */
    rules: z.array(z.string().min(1)).min(1),
    dryRun: z.boolean(),
    force: z.boolean(),
    maxDeleteFraction: z.number().min(0).max(1),
    startedAt: z.string(),
  }),
  /** The rule being reconciled now (an index into `request.rules`). */
  ruleIndex: z.number().int().min(0),
  /**
   * `copies` lists both sides and sends every task but deletes, counting those; `deletes`
   * lists again and sends the deletes, when the safety stop lets them through and there were
   * more than `heldDeletes` keeps.
   */
  phase: z.enum(['copies', 'deletes']),
  /** Where the listing of the current phase stands; absent: it starts with the first page. */
  listing: z.strictObject({ s3: sideListing, azure: sideListing }).optional(),
  /**
   * The deletes found so far in the `copies` phase (the side and key of each deleted original),
   * sent without listing again when the safety stop lets them through; `null` when there were
   * too many to keep (the `deletes` phase lists again).
   */
  heldDeletes: z
    .array(z.strictObject({ side: z.enum(['s3', 'azure']), key: z.string().min(1) }))
    .nullable()
    .optional(),
  /** The most deletes the deletes phase sends per side; `null`: no limit (`force`). */
  allowance: z
    .strictObject({
      s3: z.number().int().min(0).nullable(),
      azure: z.number().int().min(0).nullable(),
    })
    .optional(),
  counts: countsSchema,
  /** The rules finished so far. */
  results: z.array(countsSchema.extend({ rule: z.string(), missing: z.literal(true).optional() })),
});

/** A reconcile run, as it stands between pages: what a follow-up message carries. */
export type ReconcileState = z.output<typeof stateSchema>;
/** The counts of one rule. */
export type RuleCounts = z.output<typeof countsSchema>;
/** What one rule came to; `missing` when the rule is no longer configured. */
export type RuleResult = ReconcileState['results'][number];
type SideListing = z.output<typeof sideListing>;

/** What a run is asked to do. */
export interface ReconcileRequest {
  rules: string[];
  dryRun?: boolean;
  force?: boolean;
  /** Deletes beyond this fraction of a side's objects are held back (default 0.1). */
  maxDeleteFraction?: number;
  /** Default: a new one (`<UTC time>-<random>`). */
  runId?: string;
}

export const DEFAULT_MAX_DELETE_FRACTION = 0.1;

function zeroCounts(): RuleCounts {
  return {
    listed: { s3: 0, azure: 0 },
    inSync: 0,
    ignored: Object.fromEntries(IGNORED_REASONS.map((reason) => [reason, 0])) as Record<
      IgnoredReason,
      number
    >,
    differences: Object.fromEntries(DIFFERENCE_KINDS.map((kind) => [kind, 0])) as Record<
      DifferenceKind,
      number
    >,
    deletes: { s3: 0, azure: 0 },
    tasksSent: 0,
    deletesSent: { s3: 0, azure: 0 },
    deletesWithheld: 0,
    deleteStops: [],
  };
}

/** A new run id: the UTC time and a few random characters, e.g. `20261129T084012Z-3fa9c1`. */
export function newRunId(now = new Date()): string {
  const time = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${time}-${randomBytes(3).toString('hex')}`;
}

/** The state a run starts from. */
export function newReconcileState(request: ReconcileRequest, now = new Date()): ReconcileState {
  return {
    request: {
      runId: request.runId ?? newRunId(now),
      rules: [...request.rules],
      dryRun: request.dryRun ?? false,
      force: request.force ?? false,
      maxDeleteFraction: request.maxDeleteFraction ?? DEFAULT_MAX_DELETE_FRACTION,
      startedAt: now.toISOString(),
    },
    ruleIndex: 0,
    phase: 'copies',
    counts: zeroCounts(),
    results: [],
  };
}

/** What a run needs, built by the composition root (the CLI, the function, the plan step). */
export interface ReconcileDependencies {
  rules: readonly ReplicationRule[];
  storesOf(rule: ReplicationRule): Promise<{ s3: ObjectStore; azure: ObjectStore }>;
  sqs: SQSClient;
  tasksQueueUrl: string;
  /** Keys per listing page (default RECONCILE_PAGE_SIZE). */
  pageSize?: number;
  /** HEADs in flight at once (default RECONCILE_HEAD_CONCURRENCY). */
  headConcurrency?: number;
  /** Deletes kept to send without a second listing (default RECONCILE_HELD_DELETES). */
  heldDeletes?: number;
}

/** One line of a run's report: a difference, and the task that repairs it. */
export interface ReportedDifference {
  rule: string;
  difference: DifferenceKind;
  /** The side whose version wins (for `deleted`: where the original was deleted). */
  side: Side;
  /** The key on that side. */
  key: string;
  /** What the task does on the other side. */
  action: 'copy' | 'delete';
  /** The object the task writes or deletes, as a URI. */
  target: string;
}

/** Where a run stands, after each page. */
export interface ReconcileProgress {
  rule: string;
  /** 1-based. */
  ruleNumber: number;
  rules: number;
  phase: ReconcileState['phase'];
  counts: RuleCounts;
}

export interface RunReconcileOptions {
  /** Aborts everything (Ctrl-C). */
  signal?: AbortSignal;
  /**
   * Fires when the invocation nears its end: no new page is listed after it, and the run
   * returns its state to go on from (each call lists at least one page).
   */
  stop?: AbortSignal;
  onDifference?(difference: ReportedDifference): void;
  onProgress?(progress: ReconcileProgress): void;
  onRuleDone?(result: RuleResult): void;
}

/** A side's listing a page ahead: the next page is requested as soon as one is taken. */
class PageReader {
  readonly #store: ObjectStore;
  readonly #prefix: string;
  readonly #pageSize: number;
  readonly #abort = new AbortController();
  readonly #signal: AbortSignal;
  readonly #stop: AbortSignal | undefined;
  #ahead: Promise<ListPage> | undefined;
  /** The token of the page after the last one taken. */
  #token: string | undefined;

  constructor(
    store: ObjectStore,
    prefix: string,
    token: string | undefined,
    pageSize: number,
    signals: { signal?: AbortSignal | undefined; stop?: AbortSignal | undefined },
  ) {
    const { signal, stop } = signals;
    this.#stop = stop;
    this.#store = store;
    this.#prefix = prefix;
    this.#pageSize = pageSize;
    this.#signal = signal ? AbortSignal.any([signal, this.#abort.signal]) : this.#abort.signal;
    this.#ahead = this.#fetch(token);
  }

  #fetch(token: string | undefined): Promise<ListPage> {
    const page = this.#store.list(this.#prefix, {
      ...(token !== undefined && { continuationToken: token }),
      maxResults: this.#pageSize,
      metadata: true,
      signal: this.#signal,
    });
    // A page read ahead and never taken (the run stopped) must not fail the process.
    page.catch(() => undefined);
    return page;
  }

  async next(): Promise<ListPage> {
    const current = this.#ahead ?? this.#fetch(this.#token);
    const page = await current;
    // Once the run is to stop, the next page is the next invocation's to list.
    this.#ahead =
      page.continuationToken !== undefined && !this.#stop?.aborted
        ? this.#fetch(page.continuationToken)
        : undefined;
    this.#token = page.continuationToken;
    return page;
  }

  close(): void {
    this.#abort.abort();
  }
}

const uri = (side: Side, container: string, key: string) =>
  `${side === 's3' ? 's3' : 'az'}://${container}/${key}`;

function freshListing(): SideListing {
  return { done: false, orders: [...KEY_ORDERS], pending: [] };
}

function cursorOf(listing: SideListing): CursorState {
  return {
    orders: [...listing.orders],
    done: listing.done,
    ...(listing.last !== undefined && { last: listing.last }),
  };
}

/** Tasks to the tasks queue, a chunk at a time, several chunks at once. */
class TaskSender {
  readonly #sqs: SQSClient;
  readonly #queueUrl: string;
  readonly #signal: AbortSignal | undefined;
  #buffer: CopyTask[] = [];

  constructor(sqs: SQSClient, queueUrl: string, signal: AbortSignal | undefined) {
    this.#sqs = sqs;
    this.#queueUrl = queueUrl;
    this.#signal = signal;
  }

  add(task: CopyTask): void {
    this.#buffer.push(task);
  }

  async flush(): Promise<void> {
    const tasks = this.#buffer;
    this.#buffer = [];
    const chunks: CopyTask[][] = [];
    for (let start = 0; start < tasks.length; start += SEND_CHUNK) {
      chunks.push(tasks.slice(start, start + SEND_CHUNK));
    }
    await runPool(
      chunks,
      SEND_CONCURRENCY,
      (chunk, signal) =>
        sendAll(
          this.#sqs,
          this.#queueUrl,
          chunk.map((task) => ({ body: JSON.stringify(task) })),
          signal,
        ),
      this.#signal,
    );
  }
}

interface PhaseContext {
  rule: ReplicationRule;
  stores: { s3: ObjectStore; azure: ObjectStore };
  state: ReconcileState;
  dependencies: ReconcileDependencies;
  options: RunReconcileOptions;
  sender: TaskSender;
  /** Whether this call has listed a page yet (each call lists at least one). */
  slice: { progressed: boolean };
}

/** Counts a verdict, reports a difference, and queues its task when this phase sends it. */
function record(context: PhaseContext, verdict: KeyVerdict): void {
  const { state, rule, options } = context;
  const counts = state.counts;
  if (state.phase === 'deletes') {
    if (verdict.verdict !== 'difference' || verdict.difference !== 'deleted') return;
    const side = destinationSideOf(verdict.task);
    const allowance = state.allowance?.[side] ?? null;
    if (allowance !== null && counts.deletesSent[side] >= allowance) {
      counts.deletesWithheld += 1;
      return;
    }
    counts.deletesSent[side] += 1;
    counts.tasksSent += 1;
    context.sender.add(verdict.task);
    return;
  }
  if (verdict.verdict === 'in-sync') {
    counts.inSync += 1;
    return;
  }
  if (verdict.verdict === 'ignored') {
    counts.ignored[verdict.reason] += 1;
    return;
  }
  if (verdict.verdict !== 'difference') return;
  const { task, difference } = verdict;
  counts.differences[difference] += 1;
  options.onDifference?.({
    rule: rule.name,
    difference,
    side: task.sourceSide,
    key: task.sourceKey,
    action: task.kind === 'deleted' ? 'delete' : 'copy',
    target: uri(destinationSideOf(task), task.destinationContainer, task.destinationKey),
  });
  // Deletes wait until the whole rule is counted (the safety stop), then go in a second pass.
  if (difference === 'deleted') {
    counts.deletes[destinationSideOf(task)] += 1;
    hold(context, task);
    return;
  }
  if (state.request.dryRun) return;
  counts.tasksSent += 1;
  context.sender.add(task);
}

/** Keeps a delete's key to send after the count, while few enough are kept. */
function hold(context: PhaseContext, task: CopyTask): void {
  const { state } = context;
  if (state.heldDeletes === null) return;
  state.heldDeletes ??= [];
  const held = state.heldDeletes;
  held.push({ side: task.sourceSide, key: task.sourceKey });
  const bytes = held.reduce((sum, each) => sum + Buffer.byteLength(each.key) + 24, 0);
  if (
    held.length > (context.dependencies.heldDeletes ?? RECONCILE_HELD_DELETES) ||
    bytes > HELD_DELETE_BYTES
  ) {
    state.heldDeletes = null;
  }
}

/** Sends the deletes kept during the count (the safety stop let them through). */
async function sendHeldDeletes(context: PhaseContext): Promise<void> {
  const { state, rule, sender } = context;
  const origin = {
    eventTime: new Date().toISOString(),
    correlationId: `reconcile:${state.request.runId}`,
  };
  for (const { side, key } of state.heldDeletes ?? []) {
    const task = taskForKey(rule, side, key, 'deleted', origin);
    if (!task) continue;
    state.counts.deletesSent[destinationSideOf(task)] += 1;
    state.counts.tasksSent += 1;
    sender.add(task);
  }
  await sender.flush();
}

/** Classifies the settled keys, reading the metadata where it decides, and records them. */
async function settle(context: PhaseContext, pairs: KeyPair<ObjectState>[]): Promise<void> {
  const { rule, stores, state, options } = context;
  const origin = {
    eventTime: new Date().toISOString(),
    correlationId: `reconcile:${state.request.runId}`,
  };
  // Only a key on one side can be a delete: the deletes pass reads nothing for the others.
  let round = state.phase === 'deletes' ? pairs.filter((pair) => !pair.s3 !== !pair.azure) : pairs;
  for (let attempt = 1; round.length > 0; attempt++) {
    const needs: Array<{ pair: KeyPair<ObjectState>; side: Side }> = [];
    for (const pair of round) {
      const verdict = compareKey(rule, pair, origin);
      if (verdict.verdict === 'needs-metadata') {
        if (attempt > 2) {
          throw new PermanentError(
            `${stores[verdict.side].describe(pair[verdict.side]?.key ?? pair.relative)}: its metadata could not be read`,
          );
        }
        needs.push({ pair, side: verdict.side });
      } else record(context, verdict);
    }
    await runPool(
      needs,
      context.dependencies.headConcurrency ?? RECONCILE_HEAD_CONCURRENCY,
      async ({ pair, side }, signal) => {
        const object = pair[side];
        if (!object) return;
        const head = await stores[side].head(object.key, { signal });
        // Gone since it was listed: the other side decides alone.
        if (head) pair[side] = head;
        else delete pair[side];
      },
      options.signal,
    );
    round = needs.map((need) => need.pair);
  }
  await context.sender.flush();
}

/** Which sides to list a page of next: the one behind (fewer keys waiting on it), or both. */
function nextSides(merge: ListingMerge<ObjectState>): Side[] {
  const open = SIDES.filter((side) => !merge.done(side));
  if (open.length < 2) return open;
  const s3 = merge.pendingCount('s3');
  const azure = merge.pendingCount('azure');
  if (s3 > azure) return ['azure'];
  if (azure > s3) return ['s3'];
  return ['s3', 'azure'];
}

/**
 * Lists both sides of the rule for the current phase, from where the state says, until both
 * listings end (`true`) or `stop` fires (`false`: the state says where to go on).
 */
async function listPhase(context: PhaseContext): Promise<boolean> {
  const { rule, stores, state, dependencies, options, slice } = context;
  state.listing ??= { s3: freshListing(), azure: freshListing() };
  const listing = state.listing;
  const prefixes = { s3: rule.s3.prefix, azure: rule.azure.prefix };
  const merge = new ListingMerge<ObjectState>(
    prefixes,
    { s3: stores.s3.describe(rule.s3.prefix), azure: stores.azure.describe(rule.azure.prefix) },
    { s3: cursorOf(listing.s3), azure: cursorOf(listing.azure) },
  );
  // What waited for the other side when the last invocation stopped is read again.
  for (const side of SIDES) {
    const keys = listing[side].pending;
    listing[side].pending = [];
    const objects: ObjectState[] = [];
    await runPool(
      keys,
      dependencies.headConcurrency ?? RECONCILE_HEAD_CONCURRENCY,
      async (key, signal) => {
        const head = await stores[side].head(key, { signal });
        if (head) objects.push(head);
      },
      options.signal,
    );
    for (const object of objects) merge.restore(side, object);
  }
  const pageSize = dependencies.pageSize ?? RECONCILE_PAGE_SIZE;
  const readers: Partial<Record<Side, PageReader>> = {};
  for (const side of SIDES) {
    if (!listing[side].done) {
      readers[side] = new PageReader(stores[side], prefixes[side], listing[side].token, pageSize, {
        signal: options.signal,
        stop: options.stop,
      });
    }
  }
  let overBudget = 0;
  try {
    for (;;) {
      if (merge.done('s3') && merge.done('azure')) return true;
      if (slice.progressed && options.stop?.aborted) {
        for (const side of SIDES) {
          listing[side].pending = merge.pending(side).map((object) => object.key);
        }
        if (Buffer.byteLength(reconcileContinuationMessage(state)) <= RECONCILE_MESSAGE_BUDGET) {
          return false;
        }
        overBudget += 1;
        if (overBudget > OVER_BUDGET_PAGES) {
          throw new PermanentError(
            `reconcile of rule "${rule.name}" cannot go on in another invocation: ${merge.pendingCount('s3') + merge.pendingCount('azure')} keys wait for the other side's listing (the two sides list in different orders), more than a message holds; run "s3az reconcile" for this rule instead`,
          );
        }
        for (const side of SIDES) listing[side].pending = [];
      }
      options.signal?.throwIfAborted();
      const sides = nextSides(merge);
      const pages = await Promise.all(
        sides.map(async (side) => {
          const reader = readers[side];
          if (!reader) throw new Error(`no listing of ${side} to read`);
          return { side, page: await reader.next() };
        }),
      );
      const settled: KeyPair<ObjectState>[] = [];
      for (const { side, page } of pages) {
        if (state.phase === 'copies') state.counts.listed[side] += page.items.length;
        settled.push(...merge.add(side, page.items));
        if (page.continuationToken !== undefined) listing[side].token = page.continuationToken;
        else {
          delete listing[side].token;
          settled.push(...merge.finish(side));
        }
      }
      for (const side of SIDES) {
        const cursor = merge.cursorState(side);
        listing[side].orders = cursor.orders;
        listing[side].done = cursor.done;
        if (cursor.last !== undefined) listing[side].last = cursor.last;
      }
      await settle(context, settled);
      slice.progressed = true;
      options.onProgress?.({
        rule: rule.name,
        ruleNumber: state.ruleIndex + 1,
        rules: state.request.rules.length,
        phase: state.phase,
        counts: state.counts,
      });
    }
  } finally {
    for (const reader of Object.values(readers)) reader.close();
  }
}

function finishRule(state: ReconcileState, options: RunReconcileOptions, missing = false): void {
  const rule = state.request.rules[state.ruleIndex] ?? '';
  const result: RuleResult = { rule, ...state.counts, ...(missing && { missing: true as const }) };
  state.results.push(result);
  options.onRuleDone?.(result);
  state.ruleIndex += 1;
  state.phase = 'copies';
  delete state.listing;
  delete state.allowance;
  delete state.heldDeletes;
  state.counts = zeroCounts();
}

/**
 * Reconciles the rules of `state` (README, "Reconcile"): lists both sides of each rule, a page
 * of each at a time, compares each key (`compareKey`) and sends one task per difference to the
 * tasks queue, where the copy step decides it as it decides an event's. Deletes are counted
 * first and sent only once the whole rule is listed, when they stay within `maxDeleteFraction`
 * of the objects on the side they happen on (or with `force`): the keys of up to
 * `RECONCILE_HELD_DELETES` are kept meanwhile, more are found again by a second listing.
 * Otherwise they are withheld and the result names the sides (`deleteStops`). With `stop`, it
 * returns the state to go on from in another invocation (`done: false`); tasks are stored
 * before it returns.
 */
export async function runReconcile(
  from: ReconcileState,
  dependencies: ReconcileDependencies,
  options: RunReconcileOptions = {},
): Promise<{ state: ReconcileState; done: boolean }> {
  const state = structuredClone(from);
  const slice = { progressed: false };
  const { request } = state;
  const sender = new TaskSender(dependencies.sqs, dependencies.tasksQueueUrl, options.signal);
  while (state.ruleIndex < request.rules.length) {
    if (slice.progressed && options.stop?.aborted && state.listing === undefined) {
      return { state, done: false };
    }
    const name = request.rules[state.ruleIndex];
    const rule = dependencies.rules.find((candidate) => candidate.name === name);
    if (!rule) {
      finishRule(state, options, true);
      continue;
    }
    const stores = await dependencies.storesOf(rule);
    const context: PhaseContext = { rule, stores, state, dependencies, options, sender, slice };
    if (!(await listPhase(context))) return { state, done: false };
    delete state.listing;
    const { counts } = state;
    const deletes = counts.deletes.s3 + counts.deletes.azure;
    if (state.phase === 'copies' && deletes > 0) {
      const stops = deleteStops(counts.listed, counts.deletes, request.maxDeleteFraction);
      if (stops.length > 0 && !request.force) {
        counts.deleteStops = stops;
        counts.deletesWithheld = deletes;
      } else if (!request.dryRun && Array.isArray(state.heldDeletes)) {
        await sendHeldDeletes(context);
      } else if (!request.dryRun) {
        state.phase = 'deletes';
        // Deletes found since the count are held to the same limit.
        state.allowance = request.force
          ? { s3: null, azure: null }
          : {
              s3: deleteAllowance(counts.listed.s3, request.maxDeleteFraction),
              azure: deleteAllowance(counts.listed.azure, request.maxDeleteFraction),
            };
        continue;
      }
    }
    finishRule(state, options);
  }
  return { state, done: true };
}

/** Differences one invocation logs at most (a dry run's report, in the function's logs). */
export const LOGGED_DIFFERENCES = 1000;

/** An `onDifference` that logs each difference, up to `LOGGED_DIFFERENCES`, then says so once. */
export function logDifferences(
  log: (message: string, fields: Record<string, unknown>) => void,
): (difference: ReportedDifference) => void {
  let logged = 0;
  return (difference) => {
    logged += 1;
    if (logged <= LOGGED_DIFFERENCES) log('reconcile difference', { ...difference });
    else if (logged === LOGGED_DIFFERENCES + 1) {
      log('reconcile: more differences than are logged; the summary counts them all', {});
    }
  };
}

/** A run's totals over its finished rules. */
export interface ReconcileSummary {
  runId: string;
  dryRun: boolean;
  startedAt: string;
  differences: number;
  tasksSent: number;
  deletesWithheld: number;
  rules: RuleResult[];
  /** The rules whose deletes the safety stop held back. */
  refused: Array<{ rule: string; deleteStops: DeleteStop[]; deletesWithheld: number }>;
}

export function summarize(state: ReconcileState): ReconcileSummary {
  const sum = (count: (result: RuleResult) => number) =>
    state.results.reduce((total, result) => total + count(result), 0);
  return {
    runId: state.request.runId,
    dryRun: state.request.dryRun,
    startedAt: state.request.startedAt,
    differences: sum((result) =>
      DIFFERENCE_KINDS.reduce((total, kind) => total + result.differences[kind], 0),
    ),
    tasksSent: sum((result) => result.tasksSent),
    deletesWithheld: sum((result) => result.deletesWithheld),
    rules: state.results,
    refused: state.results
      .filter((result) => result.deleteStops.length > 0)
      .map(({ rule, deleteStops, deletesWithheld }) => ({ rule, deleteStops, deletesWithheld })),
  };
}

/** The events-queue message that carries on with a run from `state`. */
export function reconcileContinuationMessage(state: ReconcileState): string {
  return JSON.stringify({ s3azReconcileContinuation: state });
}

/**
 * A follow-up message of `reconcileContinuationMessage`, or `undefined` for any other body.
 * One that names itself a reconcile continuation but does not parse is an `EventParseError`.
 */
export function parseReconcileContinuation(body: string): ReconcileState | undefined {
  if (!body.includes('"s3azReconcileContinuation"')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || !('s3azReconcileContinuation' in value)) {
    return undefined;
  }
  const result = z.strictObject({ s3azReconcileContinuation: stateSchema }).safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new EventParseError(
      `the reconcile continuation does not parse: ${issue?.path.join('.') || '(top level)'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return result.data.s3azReconcileContinuation;
}
