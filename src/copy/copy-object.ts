import { createHash } from 'node:crypto';
import { pipeline, type Readable } from 'node:stream';
import { checkKeyFor } from '../core/keys.ts';
import { planMemory } from '../core/memory-plan.ts';
import { buildNativeMetadata, sourceRef, stampMarker, userMetadataOf } from '../core/metadata.ts';
import { translateToolMetadata } from '../core/tool-metadata.ts';
import {
  NotFoundError,
  PreconditionFailedError,
  PullUnsupportedError,
  ReplicatorError,
  RetryableError,
  UsageError,
} from '../errors.ts';
import { PART_ATTEMPTS } from '../queue/timing.ts';
import {
  isPresigner,
  isPullFromUrl,
  type ObjectBody,
  type ObjectHead,
  type ObjectStore,
  type StagedPart,
  type StagedUpload,
  streamsParts,
  type WriteCondition,
  type WriteOptions,
} from '../stores/object-store.ts';
import { exactLength, readExactly } from '../stores/read-exactly.ts';
import { BufferPool } from './buffer-pool.ts';
import { runPool } from './pool.ts';
import { PullMemory } from './pull-memory.ts';

/** What to copy, where, and how. */
export interface CopyObjectRequest {
  source: ObjectStore;
  sourceKey: string;
  destination: ObjectStore;
  destinationKey: string;
  /** Destination state the caller decided on; the commit is conditional on it. Default: read now. */
  condition?: WriteCondition;
  /** Preferred part size in bytes; the planner grows it when the object needs more parts. */
  partSize: number;
  /**
   * Most ranges streamed at once. Server-side pulls, which hold no bytes here, run twice as
   * many.
   */
  concurrency: number;
  /**
   * Bytes this copy may hold at once. The part size and the concurrency are planned to fit it
   * (`planMemory`): parts streamed to S3 cost a few MiB a lane whatever their size; blocks for
   * Azure are held whole, so they are made smaller and fewer run at once. Default: unchecked,
   * about concurrency x part size.
   */
  memoryBudget?: number;
  /** `stream` forces bytes through this process even where the destination could pull. */
  transfer?: 'auto' | 'stream';
  /** Where "this destination cannot pull" is remembered across copies. */
  pullMemory?: PullMemory;
  /** Per-key sequencer of the event that caused the copy, recorded in the replica marker. */
  sourceSequencer?: string;
  /**
   * The replication rule making this copy, recorded in the replica marker. A copy without one
   * (`s3az copy`) is marked as no rule's replica, so that a mirror replicates it as new.
   */
  rule?: string;
  signal?: AbortSignal;
  /** Called as bytes are committed to the staging area. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  log?: (message: string) => void;
  /** How often a copy starts over on a source that changes under it. Default 3. */
  maxRestarts?: number;
  /** Lifetime of presigned source URLs for server-side pulls. Default 900 s. */
  presignExpirySeconds?: number;
  /**
   * The source's state as the caller just read it (to decide): the first attempt starts from
   * it instead of reading it again. Reads with If-Match and the checks before the commit still
   * catch a source that changes after it.
   */
  sourceHead?: ObjectHead;
  /**
   * The whole content of `sourceHead`'s version, when the caller read it with the head (one GET
   * of a small object): a copy in one request sends it without reading the source again.
   */
  sourceBody?: Buffer;
  /**
   * Where an earlier run of this copy stopped (its `CopyStoppedError.checkpoint`). When the
   * source is still that version, the copy goes on in the same staged upload, sending only the
   * parts not verified there; otherwise the staged parts are abandoned and the copy starts over.
   */
  resume?: CopyCheckpoint;
  /**
   * When the signal stops a staged copy, keep what is staged (an S3 multipart upload is not
   * aborted) and throw `CopyStoppedError` with the checkpoint for a later run. Default: abort.
   */
  keepStagedOnStop?: boolean;
}

/** One part a stopped copy staged, with the checksum it was sent with, where the store keeps one. */
export interface CheckpointPart {
  partNumber: number;
  /** S3 CRC32, base64; absent on Azure (its block list reports no checksum to compare). */
  checksum?: string;
}

/** What a copy stopped by its signal left staged: everything the next run needs to go on. */
export interface CopyCheckpoint {
  /** The S3 upload id, or the Azure staging id that names the blocks. */
  uploadId: string;
  /** The preferred part size the plan was made from (same size, same plan). */
  partSize: number;
  /** The source version the staged parts hold. */
  sourceEtag: string;
  sourceVersionId?: string;
  sourceSize: number;
  /** The parts staged, as sent. */
  parts: CheckpointPart[];
}

export interface CopyObjectResult {
  sourceKey: string;
  destinationKey: string;
  size: number;
  sourceEtag: string;
  destinationEtag: string;
  /** `pull`: the destination fetched the bytes itself; `stream`: they passed through here. */
  transfer: 'pull' | 'stream';
  mode: 'single' | 'staged';
  parts: number;
  /** Times the copy started over because the source changed. */
  restarts: number;
}

/** The source changed (or vanished) while it was being read; the copy starts over. */
export class SourceChangedError extends RetryableError {
  readonly destinationCondition: WriteCondition | undefined;

  constructor(message: string, destinationCondition?: WriteCondition) {
    super(message);
    this.name = 'SourceChangedError';
    this.destinationCondition = destinationCondition;
  }
}

/**
 * The copy's signal stopped it before the commit. With `keepStagedOnStop`, `checkpoint` says
 * what stays staged for a later run (absent when the copy stopped before it staged anything).
 */
export class CopyStoppedError extends RetryableError {
  readonly checkpoint: CopyCheckpoint | undefined;
  /** Parts this run staged (0: the run made no progress). */
  readonly partsSent: number;

  constructor(
    message: string,
    checkpoint: CopyCheckpoint | undefined,
    partsSent: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'CopyStoppedError';
    this.checkpoint = checkpoint;
    this.partsSent = partsSent;
  }
}

/**
 * Gives up what a stopped copy staged: aborts its S3 multipart upload (which costs storage until
 * then); Azure discards uncommitted blocks by itself. A failure here only leaves the upload for
 * the bucket's lifecycle rule, so it is not thrown.
 */
export async function abandonCheckpoint(
  destination: ObjectStore,
  destinationKey: string,
  checkpoint: CopyCheckpoint,
): Promise<void> {
  await destination
    .abortStaged({ key: destinationKey, uploadId: checkpoint.uploadId })
    .catch(() => undefined);
}

// A server-side pull holds no bytes here, so it can keep more ranges in flight for free.
const PULL_CONCURRENCY_FACTOR = 2;
const defaultPullMemory = new PullMemory();

/**
 * Copies one object between stores: one request for small objects, otherwise ranged and
 * parallel; every range read `If-Match` the source eTag; each part sent with its MD5 for
 * the destination to verify; committed conditionally on `condition`. A source that changes
 * mid-copy restarts the copy on the new version, so a mixed object is never committed.
 * A 412 on the destination is thrown as `PreconditionFailedError` for the caller to re-decide.
 */
export async function copyObject(request: CopyObjectRequest): Promise<CopyObjectResult> {
  const { source, sourceKey, destination, destinationKey } = request;
  checkKeyFor(destination.side, destinationKey);
  const maxRestarts = request.maxRestarts ?? 3;
  let condition = request.condition;
  let restarts = 0;
  let known = request.sourceHead;
  let resume = request.resume;
  for (;;) {
    const head = known ?? (await source.head(sourceKey, withSignal(request.signal)));
    known = undefined;
    if (!head && resume) await abandonCheckpoint(destination, destinationKey, resume);
    if (!head)
      throw new NotFoundError(`${source.describe(sourceKey)}: source object does not exist`);
    const resumed = resume && holdsVersion(resume, head) ? resume : undefined;
    if (resume && !resumed) {
      // Never stitch two versions together: what is staged holds the old one.
      await abandonCheckpoint(destination, destinationKey, resume);
      request.log?.(
        `${source.describe(sourceKey)} changed since the copy stopped; starting over on the new version`,
      );
    }
    resume = undefined;
    condition ??= await currentCondition(destination, destinationKey, request.signal);
    try {
      const result = await copyVersion(request, head, condition, resumed);
      return { ...result, restarts };
    } catch (error) {
      if (!(error instanceof SourceChangedError)) throw error;
      if (restarts >= maxRestarts) {
        throw new RetryableError(
          `${source.describe(sourceKey)}: the source changed ${restarts + 1} times during the copy; giving up for now`,
          { cause: error },
        );
      }
      restarts += 1;
      if (error.destinationCondition) condition = error.destinationCondition;
      request.log?.(`${source.describe(sourceKey)} changed during the copy; starting over`);
    }
  }
}

/** A fanned-out copy's open staged upload, as its range and finishing tasks know it. */
export interface FanOutUpload {
  /** The upload, its plan's part size and the source version; `parts` is empty. */
  checkpoint: CopyCheckpoint;
  /** Parts in the plan. */
  parts: number;
  /** Bytes of every part but the last. */
  partSize: number;
}

/**
 * Opens the staged upload of a copy that range tasks will fill in parallel (each with
 * `stageRange`) and one finishing task will commit (`commitFanOut`). Nothing is staged yet.
 * The write (properties, metadata, marker) is the one the commit will make, conditional on
 * `condition`.
 */
export async function beginFanOut(
  request: CopyObjectRequest,
  head: ObjectHead,
  condition: WriteCondition,
): Promise<FanOutUpload> {
  const { plan, preferredPartSize } = memoryPlanOf(request, head.size);
  if (plan.mode === 'single') {
    throw new UsageError(`${request.source.describe(request.sourceKey)} fits one request`);
  }
  const upload = await request.destination.beginStaged(
    request.destinationKey,
    writeFor(request, head, condition),
    stagingIdFor(head, request.destinationKey, plan.partSize),
  );
  return {
    checkpoint: {
      uploadId: upload.uploadId,
      partSize: preferredPartSize,
      sourceEtag: head.etag,
      ...(head.versionId !== undefined && { sourceVersionId: head.versionId }),
      sourceSize: head.size,
      parts: [],
    },
    parts: plan.parts.length,
    partSize: plan.partSize,
  };
}

/**
 * Stages parts `first` to `last` of a fanned-out copy into its upload (`checkpoint`: the upload,
 * and the parts this range staged before, when it is continued), skipping those already there.
 * It commits nothing and never aborts the shared upload.
 *
 * @throws SourceChangedError when the source is no longer the version the upload holds.
 * @throws NotFoundError when the upload is gone (its finishing task gave it up).
 * @throws CopyStoppedError (with `keepStagedOnStop`) when the signal stopped it.
 */
export async function stageRange(
  request: CopyObjectRequest,
  checkpoint: CopyCheckpoint,
  first: number,
  last: number,
): Promise<void> {
  const head = request.sourceHead ?? (await request.source.head(request.sourceKey));
  if (!head || !holdsVersion(checkpoint, head)) {
    throw new SourceChangedError(
      `${request.source.describe(request.sourceKey)} is no longer the version being copied`,
    );
  }
  await copyVersion(request, head, { kind: 'any' }, checkpoint, { first, last });
}

/** What a finishing task found: the copy committed, or the parts still missing. */
export type FanOutState =
  | { committed: true; result: CopyObjectResult }
  | { committed: false; missing: number[]; staged: number };

/**
 * Commits a fanned-out copy when every part of its plan is staged with its planned size, on
 * `condition` and on the source being unchanged; otherwise says which parts are missing.
 *
 * Listed S3 parts are taken with the checksum S3 lists: each was read `If-Match` the source
 * version this upload holds and verified by S3 against the CRC32 it was sent with, and the
 * commit repeats those checksums for S3 to check again.
 *
 * @throws SourceChangedError when the source is no longer the version the upload holds.
 * @throws NotFoundError when the upload is gone.
 * @throws PreconditionFailedError when the destination is no longer in `condition`.
 */
export async function commitFanOut(
  request: CopyObjectRequest,
  checkpoint: CopyCheckpoint,
  condition: WriteCondition,
): Promise<FanOutState> {
  const { source, destination } = request;
  const head = request.sourceHead ?? (await source.head(request.sourceKey));
  if (!head || !holdsVersion(checkpoint, head)) {
    throw new SourceChangedError(
      `${source.describe(request.sourceKey)} is no longer the version being copied`,
    );
  }
  const { plan } = memoryPlanOf(request, head.size, checkpoint.partSize);
  const parts = plan.mode === 'single' ? [] : plan.parts;
  const upload = { key: request.destinationKey, uploadId: checkpoint.uploadId };
  const planned = new Map(parts.map((part) => [part.partNumber, part.size]));
  const staged = new Map(
    (await destination.listStaged(upload, withSignal(request.signal)))
      .filter((part) => planned.get(part.partNumber) === part.size)
      .map((part) => [part.partNumber, part]),
  );
  const missing = parts.filter((part) => !staged.has(part.partNumber));
  if (missing.length > 0) {
    return {
      committed: false,
      missing: missing.map((part) => part.partNumber),
      staged: staged.size,
    };
  }
  await assertSourceUnchanged(request, head);
  const committed = await destination.commitStaged(upload, [...staged.values()], {
    ...withoutSignal(atCommit(destination, writeFor(request, head, condition))),
    expectedSize: head.size,
  });
  request.onProgress?.(head.size, head.size);
  return {
    committed: true,
    result: {
      sourceKey: request.sourceKey,
      destinationKey: request.destinationKey,
      size: head.size,
      sourceEtag: head.etag,
      destinationEtag: committed.etag,
      transfer: isPullFromUrl(destination) && isPresigner(source) ? 'pull' : 'stream',
      mode: 'staged',
      parts: parts.length,
      restarts: 0,
    },
  };
}

async function currentCondition(
  store: ObjectStore,
  key: string,
  signal: AbortSignal | undefined,
): Promise<WriteCondition> {
  const head = await store.head(key, withSignal(signal));
  return head ? { kind: 'match', etag: head.etag } : { kind: 'absent' };
}

function holdsVersion(checkpoint: CopyCheckpoint, head: ObjectHead): boolean {
  return (
    checkpoint.sourceEtag === head.etag &&
    checkpoint.sourceSize === head.size &&
    checkpoint.sourceVersionId === head.versionId
  );
}

/**
 * A commit runs to its end once started: stopped by the time budget, its outcome would be
 * unknown (the store may commit after the client gave up), and the next run would find a
 * finished copy and report a skip. The budget's margin leaves it the time.
 */
function withoutSignal(write: WriteOptions): WriteOptions {
  const { signal: _stopped, ...rest } = write;
  return rest;
}

function withSignal(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

type VersionResult = Omit<CopyObjectResult, 'restarts'>;

/**
 * The memory plan of a copy. A resumed copy keeps the plan its staged parts were cut by,
 * whatever the rule says now.
 */
function memoryPlanOf(request: CopyObjectRequest, size: number, fixedPartSize?: number) {
  return planMemory(size, {
    partSize: request.partSize,
    ...(fixedPartSize !== undefined && { fixedPartSize }),
    concurrency: request.concurrency,
    budget: request.memoryBudget,
    limits: request.destination.limits,
    streamsParts: streamsParts(request.destination),
  });
}

/**
 * Copies one version. With `only`, it stages just those parts of the plan into the upload
 * `resume` names and commits nothing (a range task of a fanned-out copy): the upload is shared,
 * so it is never aborted or replaced from here.
 */
async function copyVersion(
  request: CopyObjectRequest,
  head: ObjectHead,
  condition: WriteCondition,
  resume: CopyCheckpoint | undefined,
  only?: { first: number; last: number },
): Promise<VersionResult> {
  const { source, destination } = request;
  const write = writeFor(request, head, condition);
  const memoryPlan = memoryPlanOf(request, head.size, resume?.partSize);
  const { plan, preferredPartSize } = memoryPlan;
  const planned = plan.mode === 'single' ? [] : plan.parts;
  const ranges = only
    ? planned.filter((part) => part.partNumber >= only.first && part.partNumber <= only.last)
    : planned;
  const stageOnly = only !== undefined;
  const memory = request.pullMemory ?? defaultPullMemory;
  const base = {
    sourceKey: request.sourceKey,
    destinationKey: request.destinationKey,
    size: head.size,
    sourceEtag: head.etag,
    mode: plan.mode,
    parts: plan.mode === 'single' ? 1 : ranges.length,
  } as const;

  if (
    request.transfer !== 'stream' &&
    isPullFromUrl(destination) &&
    isPresigner(source) &&
    !memory.isDisabled(source, destination)
  ) {
    try {
      const destinationEtag = await pullCopy(request, head, write, ranges, {
        resume,
        preferredPartSize,
        stageOnly,
      });
      return { ...base, destinationEtag, transfer: 'pull' };
    } catch (error) {
      // A source that changed under the pull explains any failure of it: start over.
      if (isPullFailure(error) && !request.signal?.aborted) {
        await assertSourceUnchanged(request, head);
      }
      // Only a definitive "cannot pull from this source" switches to streaming, for a while;
      // a transient failure (a busy source, an expired URL) is retried, and pulls again.
      if (!(error instanceof PullUnsupportedError)) throw error;
      if (memory.disable(source, destination, error.message)) {
        request.log?.(
          `${destination.describe('')}: server-side pull is not available (${error.message}); streaming through this process instead`,
        );
      }
    }
  }
  const destinationEtag = await streamCopy(request, head, write, ranges, memoryPlan.concurrency, {
    resume,
    preferredPartSize,
    stageOnly,
  });
  return { ...base, destinationEtag, transfer: 'stream' };
}

/** What the replica is written with: the source's properties, metadata and marker. */
function writeFor(
  request: CopyObjectRequest,
  head: ObjectHead,
  condition: WriteCondition,
): WriteOptions {
  const { source, destination } = request;
  const metadata = buildNativeMetadata(
    destination.side,
    // Tools that keep their own metadata in each store's form (rclone's mtime) read it on
    // the other side too.
    translateToolMetadata(
      source.side,
      destination.side,
      userMetadataOf(source.side, head.metadata),
    ),
    {
      origin: source.side,
      sourceEtag: head.etag,
      sourceLastModified: head.lastModified.toISOString(),
      ...(request.sourceSequencer !== undefined && { sourceSequencer: request.sourceSequencer }),
      ...(request.rule !== undefined && { rule: request.rule }),
      source: sourceRef(source.container, request.sourceKey),
      // What the replica holds, so that a rewrite that keeps this metadata is told apart.
      size: head.size,
      ...(head.contentMd5 !== undefined && { contentMd5: head.contentMd5 }),
      replicatedAt: new Date().toISOString(),
    },
  );
  return {
    properties: head.properties,
    metadata,
    condition,
    ...withSignal(request.signal),
  };
}

/**
 * A pull the destination could not do, or may do next time, as opposed to a refused write (412)
 * or a source change already seen: the source may have changed under it.
 */
function isPullFailure(error: unknown): boolean {
  return (
    error instanceof PullUnsupportedError ||
    (error instanceof ReplicatorError && error.retryable && !(error instanceof SourceChangedError))
  );
}

interface PlannedPart {
  partNumber: number;
  start: number;
  end: number;
  size: number;
}

/** Staging id: the same source version, size and part plan always names the same blocks. */
function stagingIdFor(head: ObjectHead, destinationKey: string, partSize: number): string {
  return createHash('sha256')
    .update(`${head.etag}\n${head.size}\n${partSize}\n${destinationKey}`)
    .digest('hex')
    .slice(0, 16);
}

async function assertSourceUnchanged(request: CopyObjectRequest, head: ObjectHead): Promise<void> {
  const now = await request.source.head(request.sourceKey, withSignal(request.signal));
  if (
    !now ||
    now.etag !== head.etag ||
    now.lastModified.getTime() !== head.lastModified.getTime()
  ) {
    throw new SourceChangedError(`${request.source.describe(request.sourceKey)} changed`);
  }
}

/**
 * The write as committed now: the marker's `replicatedAt` is the moment of the commit (Azure
 * dates a blob from Put Blob or Put Block List; S3 takes a multipart upload's metadata, and
 * its date, at its start), and with the bytes in hand their MD5 joins the marker.
 */
function atCommit(destination: ObjectStore, write: WriteOptions, md5?: Buffer): WriteOptions {
  return {
    ...write,
    metadata: stampMarker(destination.side, write.metadata, {
      replicatedAt: new Date().toISOString(),
      ...(md5 && { contentMd5: md5.toString('base64') }),
    }),
  };
}

/** How a staged copy opens its upload: in the upload of an earlier run, or in a new one. */
interface Staging {
  resume: CopyCheckpoint | undefined;
  /** The part size the plan was made from, recorded in a checkpoint. */
  preferredPartSize: number;
  /**
   * Stage the parts into the upload `resume` names, and neither commit nor abort it: it is
   * shared with other range tasks. An upload that is gone is NotFoundError, not a new one.
   */
  stageOnly?: boolean;
}

async function pullCopy(
  request: CopyObjectRequest,
  head: ObjectHead,
  write: WriteOptions,
  parts: PlannedPart[],
  staging: Staging,
): Promise<string> {
  const { source, destination } = request;
  if (!isPresigner(source) || !isPullFromUrl(destination)) {
    throw new PullUnsupportedError('the stores cannot do a server-side pull');
  }
  // A versioned source is pinned by the URL; otherwise a re-read of the source before the
  // commit proves no range came from another version.
  const url = await source.presignGet(request.sourceKey, {
    expiresInSeconds: request.presignExpirySeconds ?? 900,
    ...(head.versionId !== undefined && { versionId: head.versionId }),
  });
  if (parts.length === 0) {
    const result = await destination.putFromUrl(
      request.destinationKey,
      url,
      head.size,
      atCommit(destination, write),
    );
    try {
      await assertSourceUnchanged(request, head);
    } catch (error) {
      if (error instanceof SourceChangedError) {
        // What was written may be the newer version under the older marker: copy again over it.
        throw new SourceChangedError(error.message, { kind: 'match', etag: result.etag });
      }
      throw error;
    }
    request.onProgress?.(head.size, head.size);
    return result.etag;
  }
  return stageAndCommit(request, head, write, parts, staging, {
    concurrency: request.concurrency * PULL_CONCURRENCY_FACTOR,
    stage: (upload, part, signal) =>
      destination.stagePartFromUrl(upload, part.partNumber, url, part, { signal }),
    beforeCommit: () => assertSourceUnchanged(request, head),
    abortOnFailure: false,
  });
}

async function streamCopy(
  request: CopyObjectRequest,
  head: ObjectHead,
  write: WriteOptions,
  parts: PlannedPart[],
  concurrency: number,
  staging: Staging,
): Promise<string> {
  const { destination } = request;
  if (parts.length === 0) {
    // Bytes read with the head the copy started from (not after a restart on a newer version).
    const known =
      head === request.sourceHead && request.sourceBody?.length === head.size
        ? request.sourceBody
        : undefined;
    const body =
      head.size === 0
        ? Buffer.alloc(0)
        : (known ??
          (await readRange(request, head, {
            partNumber: 1,
            start: 0,
            end: head.size - 1,
            size: head.size,
          })));
    const md5 = createHash('md5').update(body).digest();
    const result = await destination.put(request.destinationKey, body, {
      ...atCommit(destination, write, md5),
      md5,
    });
    request.onProgress?.(head.size, head.size);
    return result.etag;
  }
  const how = {
    concurrency,
    // An S3 multipart upload that will not be committed costs storage until it is aborted.
    abortOnFailure: true,
  };
  if (streamsParts(destination)) {
    // Each part goes from the source's response to the destination's request as it arrives.
    return stageAndCommit(request, head, write, parts, staging, {
      ...how,
      stage: (upload, part, signal) =>
        pipeRange({ ...request, signal }, head, part, (body, partSignal) =>
          destination.stagePartStream(upload, part.partNumber, body, part.size, {
            signal: partSignal,
          }),
        ),
    });
  }
  // Held whole: the destination wants the part's checksum ahead of its bytes.
  const buffers = new BufferPool(concurrency, parts[0]?.size ?? head.size);
  return stageAndCommit(request, head, write, parts, staging, {
    ...how,
    stage: async (upload, part, signal) => {
      const buffer = buffers.acquire();
      try {
        const body = await readRange({ ...request, signal }, head, part, buffer);
        return await destination.stagePart(upload, part.partNumber, body, { signal });
      } finally {
        buffers.release(buffer);
      }
    },
  });
}

/**
 * The staged path both transfers share: opens (or reopens) the staging, stages the parts not
 * staged yet (`stage`, retried per part), and commits them all. On a time-budget stop with
 * `keepStagedOnStop` it throws the checkpoint (CopyStoppedError) and keeps what is staged;
 * on any other failure it aborts the staging when `abortOnFailure`.
 */
async function stageAndCommit(
  request: CopyObjectRequest,
  head: ObjectHead,
  write: WriteOptions,
  parts: PlannedPart[],
  staging: Staging,
  how: {
    concurrency: number;
    stage(upload: StagedUpload, part: PlannedPart, signal: AbortSignal): Promise<StagedPart>;
    beforeCommit?(): Promise<void>;
    abortOnFailure: boolean;
  },
): Promise<string> {
  const { destination } = request;
  const { upload, staged } = await openStaged(request, head, write, parts, staging);
  const missing = parts.filter((part) => !staged.has(part.partNumber));
  let done = sumSizes(staged);
  let sent = 0;
  try {
    await runPool(
      missing,
      how.concurrency,
      async (part, signal) => {
        const result = await withPartRetries(() => how.stage(upload, part, signal));
        staged.set(part.partNumber, result);
        sent += 1;
        done += part.size;
        request.onProgress?.(done, head.size);
      },
      request.signal,
      // Stopped by the time budget, the parts in flight finish: the next run need not send them.
      { finishInFlight: request.keepStagedOnStop === true },
    );
    if (staging.stageOnly) return '';
    await how.beforeCommit?.();
    const result = await destination.commitStaged(upload, [...staged.values()], {
      ...withoutSignal(atCommit(destination, write)),
      expectedSize: head.size,
    });
    return result.etag;
  } catch (error) {
    if (request.signal?.aborted && request.keepStagedOnStop) {
      throw stoppedAt(request, head, upload, staging, parts, staged, sent, error);
    }
    if (how.abortOnFailure && !staging.stageOnly) {
      await destination.abortStaged(upload).catch(() => undefined);
    }
    throw error;
  }
}

async function openStaged(
  request: CopyObjectRequest,
  head: ObjectHead,
  write: WriteOptions,
  parts: PlannedPart[],
  staging: Staging,
): Promise<{ upload: StagedUpload; staged: Map<number, StagedPart> }> {
  const { destination } = request;
  const { resume } = staging;
  if (resume) {
    const upload = { key: request.destinationKey, uploadId: resume.uploadId };
    try {
      return { upload, staged: await stagedParts(destination, upload, parts, request, resume) };
    } catch (error) {
      // The upload is gone (aborted, or removed by a lifecycle rule): start a new one, unless
      // it is shared with other range tasks (their finishing task decides).
      if (!(error instanceof NotFoundError) || staging.stageOnly) throw error;
      request.log?.(
        `${destination.describe(request.destinationKey)}: the staged upload of the stopped copy is gone; starting over`,
      );
    }
  }
  const partSize = parts[0]?.size ?? head.size;
  const upload = await destination.beginStaged(
    request.destinationKey,
    write,
    stagingIdFor(head, request.destinationKey, partSize),
  );
  try {
    return { upload, staged: await stagedParts(destination, upload, parts, request, undefined) };
  } catch (error) {
    await destination.abortStaged(upload).catch(() => undefined);
    throw error;
  }
}

function stoppedAt(
  request: CopyObjectRequest,
  head: ObjectHead,
  upload: StagedUpload,
  staging: Staging,
  parts: PlannedPart[],
  staged: Map<number, StagedPart>,
  sent: number,
  cause: unknown,
): CopyStoppedError {
  const checkpoint: CopyCheckpoint = {
    uploadId: upload.uploadId,
    partSize: staging.preferredPartSize,
    sourceEtag: head.etag,
    ...(head.versionId !== undefined && { sourceVersionId: head.versionId }),
    sourceSize: head.size,
    parts: [...staged.values()]
      .sort((a, b) => a.partNumber - b.partNumber)
      .map((part) => ({
        partNumber: part.partNumber,
        ...(part.checksum !== undefined && { checksum: part.checksum }),
      })),
  };
  return new CopyStoppedError(
    `${request.source.describe(request.sourceKey)}: stopped with ${staged.size} of ${parts.length} parts staged (${sent} in this run)`,
    checkpoint,
    sent,
    { cause },
  );
}

/**
 * Parts already staged under this upload that match the plan: the planned size, and where the
 * store reports a checksum (S3), the checksum the part was sent with as the checkpoint recorded
 * it. Any other part is sent again (it replaces the listed one).
 */
async function stagedParts(
  destination: ObjectStore,
  upload: StagedUpload,
  parts: PlannedPart[],
  request: CopyObjectRequest,
  resume: CopyCheckpoint | undefined,
): Promise<Map<number, StagedPart>> {
  const planned = new Map(parts.map((part) => [part.partNumber, part.size]));
  const sentWith = new Map(resume?.parts.map((part) => [part.partNumber, part.checksum]));
  const existing = await destination.listStaged(upload, withSignal(request.signal));
  return new Map(
    existing
      .filter(
        (part) =>
          planned.get(part.partNumber) === part.size &&
          // Azure reports no checksum: its block ids name the source version and the plan.
          (part.checksum === undefined ||
            sameChecksum(part.checksum, sentWith.get(part.partNumber))),
      )
      .map((part) => [part.partNumber, part]),
  );
}

function sameChecksum(listed: string, recorded: string | undefined): boolean {
  return (
    recorded !== undefined && Buffer.from(listed, 'base64').equals(Buffer.from(recorded, 'base64'))
  );
}

/** Opens a range of the source version decided on; a changed source is SourceChangedError. */
async function openRange(
  request: CopyObjectRequest,
  head: ObjectHead,
  part: PlannedPart,
  what: string,
): Promise<ObjectBody> {
  try {
    return await request.source.get(request.sourceKey, {
      range: { start: part.start, end: part.end },
      ifMatch: head.etag,
      ...withSignal(request.signal),
    });
  } catch (error) {
    if (error instanceof PreconditionFailedError || error instanceof NotFoundError) {
      throw new SourceChangedError(`${what}: the source changed`);
    }
    throw error;
  }
}

async function readRange(
  request: CopyObjectRequest,
  head: ObjectHead,
  part: PlannedPart,
  into?: Buffer,
): Promise<Buffer> {
  const what = `${request.source.describe(request.sourceKey)} bytes ${part.start}-${part.end}`;
  const object = await openRange(request, head, part, what);
  return readExactly(object.body, part.size, what, into);
}

/**
 * Streams a range of the source into `send` without holding it: the body is checked to be
 * exactly the range's size on the way. A failure of the source's side (a reset, a short body)
 * is reported as such, not as whatever the destination's request made of it.
 */
async function pipeRange(
  request: CopyObjectRequest,
  head: ObjectHead,
  part: PlannedPart,
  send: (body: Readable, signal: AbortSignal) => Promise<StagedPart>,
): Promise<StagedPart> {
  const what = `${request.source.describe(request.sourceKey)} bytes ${part.start}-${part.end}`;
  const object = await openRange(request, head, part, what);
  const exact = exactLength(part.size, what);
  // A request whose body stream fails may wait for the rest of it forever: end it.
  const broken = new AbortController();
  const signal = request.signal ? AbortSignal.any([request.signal, broken.signal]) : broken.signal;
  let sourceFailure: unknown;
  pipeline(object.body, exact, (error) => {
    if (!error) return;
    sourceFailure ??= error;
    broken.abort(error);
  });
  try {
    return await send(exact, signal);
  } catch (error) {
    if (sourceFailure === undefined) throw error;
    if (sourceFailure instanceof RetryableError) throw sourceFailure;
    throw new RetryableError(`${what}: reading the body failed`, { cause: sourceFailure });
  } finally {
    object.body.destroy();
  }
}

async function withPartRetries<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      const retryable =
        error instanceof ReplicatorError &&
        error.retryable &&
        !(error instanceof SourceChangedError);
      if (!retryable || tries >= PART_ATTEMPTS) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** tries));
    }
  }
}

function sumSizes(parts: Map<number, StagedPart>): number {
  let total = 0;
  for (const part of parts.values()) total += part.size;
  return total;
}
