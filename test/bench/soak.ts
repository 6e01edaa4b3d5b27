import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { runPool } from '../../src/copy/pool.ts';
import { formatBytes, parseSize } from '../../src/core/range-plan.ts';
import type { RunningEmulators } from '../../src/local/emulators.ts';
import { parseFaultPlan, seededRandom } from '../../src/local/fault-proxy.ts';
import { type LocalMirror, startLocalMirror } from '../../src/local/mirror.ts';
import { queueCounts } from '../../src/ops/dead-letters.ts';
import { redrive } from '../../src/ops/redrive.ts';
import type { PipelineQueues } from '../../src/ops/target.ts';
import { makeSqsClient } from '../../src/stores/clients.ts';
import { readAll } from '../support/streams.ts';
import {
  type CrashPlan,
  type KillRecord,
  startCrashingMirror,
  type TaskFact,
  taskFactOf,
} from './crash.ts';
import type { Cleanup } from './lifecycle.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Users' S3 writes above this go multipart, in parts of this size. */
const USER_PART = 8 * MiB;

export interface SoakOptions {
  /** Objects written in the first phase, half on each side. */
  objects: number;
  /** Largest object; most are small. */
  maxBytes: number;
  /** The share of objects from 1 MiB to `maxBytes` (default 3%). */
  largeShare?: number;
  /** `--faults` of the mirror: between the replicator and the stores. */
  faults: string;
  /** Users' requests at once. */
  concurrency: number;
  /** How long to wait for the mirror to settle after each phase. */
  settleTimeoutMs: number;
  /** How long the mirror holds a delete in doubt (default: as deployed). */
  deleteHoldSeconds?: number;
  /**
   * Kill the replicator with SIGKILL by this plan (its runners, copies and webhook run in a
   * process of their own; see crash.ts); `faults` are not injected then.
   */
  crash?: CrashPlan;
  /** Scales Event Grid's retry schedule in a crash run (default 1: 10 s, 30 s, 1 min, …). */
  eventGridRetryScale?: number;
  log?: (line: string) => void;
}

export interface SoakReport {
  objects: number;
  keys: number;
  changes: number;
  bytes: number;
  faults: Record<string, number>;
  requests: number;
  retries: number;
  deadLetters: number;
  redriven: number;
  copies: number;
  /** Keys whose final state is not the last user operation on them, on either side. */
  lost: string[];
  /** For each lost key: what the users last did and what each side holds. */
  lostDetail: string[];
  /** Keys present on both sides with different bytes. */
  corrupted: string[];
  /** Keys copied more often than they were changed (beyond retries of one task). */
  pingPong: string[];
  /** With `crash`: what was going on at each kill. */
  kills: KillRecord[];
  /** With `crash`: what the emulators wrote on stderr. */
  problems: string[];
  seconds: number;
}

/** The mirror a soak runs against: in this process, or with its replicator killed by plan. */
interface SoakMirror {
  emulators: RunningEmulators;
  queues: PipelineQueues;
  faults?: LocalMirror['faults'];
  onTask(listener: (fact: TaskFact) => void): void;
  kills: KillRecord[];
  /** Resolves once no more kills are planned. */
  killed: Promise<void>;
  problems: string[];
  stop(): Promise<void>;
}

async function inProcessMirror(options: SoakOptions): Promise<SoakMirror> {
  const mirror = await startLocalMirror({
    s3Port: 0,
    azurePort: 0,
    faults: parseFaultPlan(options.faults),
    ...(options.deleteHoldSeconds !== undefined && {
      deleteHoldSeconds: options.deleteHoldSeconds,
    }),
  });
  return {
    emulators: mirror.emulators,
    queues: mirror.queues,
    ...(mirror.faults && { faults: mirror.faults }),
    onTask(listener) {
      mirror.telemetry.onTask((report) => listener(taskFactOf(report)));
    },
    kills: [],
    killed: Promise.resolve(),
    problems: [],
    stop: () => mirror.stop(),
  };
}

/**
 * Mostly small: 80% up to 64 KiB, 17% up to 1 MiB, 3% (`large`) up to `max` (multipart); a
 * larger `large` share takes from the small ones.
 */
function sizeOf(random: () => number, max: number, large = 0.03): number {
  const pick = random();
  if (pick < 0.83 - large) return Math.floor(random() * 64 * KiB);
  if (pick < 1 - large) return Math.floor(64 * KiB + random() * (MiB - 64 * KiB));
  return Math.floor(MiB + random() * (max - MiB));
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function depth(sqs: SQSClient, url: string): Promise<number> {
  const counts = await queueCounts(sqs, url);
  return counts.visible + counts.inFlight + counts.delayed;
}

/**
 * Runs a soak on a fresh local mirror with faults: writes `objects` objects (half on each side),
 * waits until the mirror settles, overwrites 20% and deletes 10% of the keys (on a random side
 * each), settles again, re-drives any dead letters and settles once more, then compares both
 * sides key by key with what the users last did.
 */
export async function soak(options: SoakOptions, cleanup?: Cleanup): Promise<SoakReport> {
  const log = options.log ?? (() => undefined);
  // EMF lines are for CloudWatch; the soak reports its own figures.
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  const started = Date.now();
  const random = seededRandom(parseFaultPlan(options.faults).seed);
  const mirror: SoakMirror = options.crash
    ? await startCrashingMirror(options.crash, {
        // A killed invocation's message comes back this soon, not after the deployed 90 minutes.
        visibilityTimeoutSeconds: 20,
        ...(options.deleteHoldSeconds !== undefined && {
          deleteHoldSeconds: options.deleteHoldSeconds,
        }),
        ...(options.eventGridRetryScale !== undefined && {
          eventGridRetryScale: options.eventGridRetryScale,
        }),
      })
    : await inProcessMirror(options);
  cleanup?.add(() => mirror.stop());
  try {
    const { emulators } = mirror;
    const s3 = new S3Client({
      endpoint: emulators.s3Endpoint,
      forcePathStyle: true,
      region: emulators.region,
      credentials: {
        accessKeyId: emulators.accessKeyId,
        secretAccessKey: emulators.secretAccessKey,
      },
    });
    const container: ContainerClient = BlobServiceClient.fromConnectionString(
      emulators.azureConnectionString,
    ).getContainerClient('replicated');
    const sqs = makeSqsClient({
      AWS_ENDPOINT_URL_SQS: emulators.s3Endpoint,
      AWS_REGION: emulators.region,
      AWS_ACCESS_KEY_ID: emulators.accessKeyId,
      AWS_SECRET_ACCESS_KEY: emulators.secretAccessKey,
    });
    let retries = 0;
    let deadLetters = 0;
    const copies = new Map<string, number>();
    /** What the replicator reported of each key's tasks, in order. */
    const history = new Map<string, string[]>();
    mirror.onTask((fact) => {
      if (fact.task !== null) {
        const said = `${fact.result}${fact.action ? ` ${fact.action}` : ''}${fact.reason ? ` (${fact.reason.slice(0, 60)})` : ''}${fact.error ? ` (${fact.error.slice(0, 80)})` : ''}`;
        history.set(fact.task, [...(history.get(fact.task) ?? []), said]);
      }
      if (fact.result === 'failed') {
        if (fact.deadLettered) deadLetters += 1;
        else retries += 1;
        if (process.env.S3AZ_SOAK_DEBUG) log(`failed: ${fact.error}`);
      }
      if (fact.result === 'done' && fact.action !== 'skipped' && fact.task !== null) {
        copies.set(fact.task, (copies.get(fact.task) ?? 0) + 1);
      }
    });

    /** What the users last did to each key: its bytes' SHA-256, or undefined for a delete. */
    const expected = new Map<string, string | undefined>();
    const lastOp = new Map<string, string>();
    const changes = new Map<string, number>();
    let bytes = 0;
    const write = async (side: 's3' | 'azure', key: string, size: number) => {
      const body = randomBytes(size);
      if (side === 's3' && size > USER_PART) {
        // As `aws s3 cp` does it (and the emulator takes at most 11 MiB a request).
        const { UploadId } = await s3.send(
          new CreateMultipartUploadCommand({ Bucket: 'replicated', Key: key }),
        );
        const parts = [];
        for (let start = 0, number = 1; start < size; start += USER_PART, number++) {
          const { ETag } = await s3.send(
            new UploadPartCommand({
              Bucket: 'replicated',
              Key: key,
              UploadId,
              PartNumber: number,
              Body: body.subarray(start, start + USER_PART),
            }),
          );
          parts.push({ PartNumber: number, ETag });
        }
        await s3.send(
          new CompleteMultipartUploadCommand({
            Bucket: 'replicated',
            Key: key,
            UploadId,
            MultipartUpload: { Parts: parts },
          }),
        );
      } else if (side === 's3') {
        await s3.send(new PutObjectCommand({ Bucket: 'replicated', Key: key, Body: body }));
      } else {
        await container.getBlockBlobClient(key).uploadData(body);
      }
      expected.set(key, sha(body));
      lastOp.set(key, `write on ${side}`);
      changes.set(key, (changes.get(key) ?? 0) + 1);
      bytes += size;
    };
    const remove = async (side: 's3' | 'azure', key: string) => {
      if (side === 's3') {
        await s3.send(new DeleteObjectCommand({ Bucket: 'replicated', Key: key }));
      } else {
        await container.getBlockBlobClient(key).deleteIfExists();
      }
      expected.set(key, undefined);
      lastOp.set(key, `delete on ${side}`);
      changes.set(key, (changes.get(key) ?? 0) + 1);
    };
    const settle = async (what: string) => {
      const deadline = Date.now() + options.settleTimeoutMs;
      let quiet = 0;
      while (quiet < 3) {
        if (Date.now() > deadline) throw new Error(`the mirror did not settle after ${what}`);
        // Events the Event Grid shim still holds (a delivery waiting for its retry) count too.
        const pending =
          (await depth(sqs, mirror.queues.events)) +
          (await depth(sqs, mirror.queues.tasks)) +
          (await mirror.emulators.eventGridPending());
        quiet = pending === 0 ? quiet + 1 : 0;
        if (process.env.S3AZ_SOAK_DEBUG) log(`pending ${pending}`);
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      log(`settled after ${what} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    };

    const keys = Array.from(
      { length: options.objects },
      (_, index) => `soak/${index % 7}/${index}.bin`,
    );
    const plan = keys.map((key, index) => ({
      key,
      side: (index % 2 === 0 ? 's3' : 'azure') as 's3' | 'azure',
      size: sizeOf(random, options.maxBytes, options.largeShare),
    }));
    log(`writing ${plan.length} objects, half on each side...`);
    await runPool(plan, options.concurrency, (item) => write(item.side, item.key, item.size));
    await settle('the writes');

    const later = keys
      .map((key) => ({
        key,
        pick: random(),
        side: (random() < 0.5 ? 's3' : 'azure') as 's3' | 'azure',
      }))
      .filter((item) => item.pick < 0.3);
    log(
      `overwriting ${later.filter((i) => i.pick < 0.2).length} and deleting ${later.filter((i) => i.pick >= 0.2).length} keys...`,
    );
    await runPool(later, options.concurrency, (item) =>
      item.pick < 0.2
        ? write(item.side, item.key, sizeOf(random, options.maxBytes, options.largeShare))
        : remove(item.side, item.key),
    );
    await mirror.killed;
    await settle('the overwrites and deletes');

    let redriven = 0;
    if (deadLetters > 0) {
      const result = await redrive({
        name: 'the soak mirror',
        sqs,
        queues: mirror.queues,
        env: {},
      });
      redriven = result.moved;
      await settle('the re-drive');
    }

    log('comparing both sides...');
    const s3Keys = new Set<string>();
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: 'replicated', ContinuationToken: token }),
      );
      for (const item of page.Contents ?? []) if (item.Key) s3Keys.add(item.Key);
      token = page.NextContinuationToken;
    } while (token);
    if (process.env.S3AZ_SOAK_DEBUG) log(`listed ${s3Keys.size} on S3`);
    const azureKeys = new Set<string>();
    for await (const item of container.listBlobsFlat()) azureKeys.add(item.name);
    if (process.env.S3AZ_SOAK_DEBUG) log(`listed ${azureKeys.size} on Azure`);
    const lost: string[] = [];
    const lostDetail: string[] = [];
    const corrupted: string[] = [];
    await runPool([...expected.keys()], options.concurrency, async (key) => {
      const want = expected.get(key);
      const onS3 = s3Keys.has(key)
        ? sha(
            await readAll(
              (await s3.send(new GetObjectCommand({ Bucket: 'replicated', Key: key })))
                .Body as Readable,
            ),
          )
        : undefined;
      const onAzure = azureKeys.has(key)
        ? sha(
            await readAll(
              (await container.getBlockBlobClient(key).download())
                .readableStreamBody as unknown as Readable,
            ),
          )
        : undefined;
      if (onS3 !== undefined && onAzure !== undefined && onS3 !== onAzure) corrupted.push(key);
      else if (onS3 !== want || onAzure !== want) {
        lost.push(key);
        const short = (hash: string | undefined) =>
          hash === undefined ? 'absent' : hash.slice(0, 8);
        lostDetail.push(
          `${key}: users last ${lastOp.get(key) ?? '?'} (${short(want)}); S3 ${short(onS3)}, Azure ${short(onAzure)}; ${changes.get(key)} changes, ${copies.get(key) ?? 0} copies; tasks: ${(history.get(key) ?? ['none']).join(', ')}`,
        );
      }
    });
    const pingPong = [...copies.entries()]
      .filter(([key, count]) => count > (changes.get(key) ?? 0))
      .map(([key]) => key);
    const faults = mirror.faults;
    const counted = { ...faults?.s3.counts().faults };
    for (const [kind, count] of Object.entries(faults?.azure.counts().faults ?? {})) {
      counted[kind as keyof typeof counted] = (counted[kind as keyof typeof counted] ?? 0) + count;
    }
    return {
      objects: plan.length,
      keys: expected.size,
      changes: [...changes.values()].reduce((sum, count) => sum + count, 0),
      bytes,
      faults: counted,
      requests: (faults?.s3.counts().requests ?? 0) + (faults?.azure.counts().requests ?? 0),
      retries,
      deadLetters,
      redriven,
      copies: [...copies.values()].reduce((sum, count) => sum + count, 0),
      lost,
      lostDetail,
      corrupted,
      pingPong,
      kills: [...mirror.kills],
      problems: [...mirror.problems],
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await mirror.stop();
  }
}

/** What the kills of a crash run interrupted. */
export function describeKills(kills: readonly KillRecord[]): string {
  const during = (what: (kill: KillRecord) => number) =>
    kills.filter((kill) => what(kill) > 0).length;
  return `replicator killed (SIGKILL): ${kills.length} times; copies running at ${during((kill) => kill.copies)} of them, with a multipart upload to S3 open at ${during((kill) => kill.uploads)}; events being planned at ${during((kill) => kill.plans)}; the webhook answering a delivery at ${during((kill) => kill.webhook)}`;
}

/** One line per figure, for people. */
export function describeSoak(report: SoakReport): string {
  const faults = Object.values(report.faults).reduce((sum, count) => sum + count, 0);
  const byKind = Object.entries(report.faults)
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ');
  return [
    `objects: ${report.objects} (${formatBytes(report.bytes)} written by users, ${report.changes} changes on ${report.keys} keys)`,
    `faults injected: ${faults} of ${report.requests} requests (${byKind})`,
    `task retries: ${report.retries} (requests the SDKs retried themselves are not counted); dead letters: ${report.deadLetters}, re-driven: ${report.redriven}`,
    `copies and deletes: ${report.copies} for ${report.changes} changes`,
    ...(report.kills.length > 0 ? [describeKills(report.kills)] : []),
    ...(report.problems.length > 0
      ? [`emulators' errors: ${report.problems.length}, the first: ${report.problems[0]}`]
      : []),
    `lost: ${report.lost.length}; corrupted: ${report.corrupted.length}; ping-pong: ${report.pingPong.length}`,
    `time: ${report.seconds.toFixed(0)} s`,
  ].join('\n');
}

/**
 * `npm run bench -- soak [--objects 10000] [--max-size 40MiB] [--faults rate=5%,seed=1]
 * [--kills N]`: the soak at full size; exits 1 unless nothing was lost, corrupted or copied back
 * and forth and at least 500 faults were injected (for the full size). With `--kills N` the
 * replicator is killed N times instead of faults being injected (the crash run).
 */
export async function runSoak(args: readonly string[], cleanup: Cleanup): Promise<void> {
  const options: SoakOptions = {
    objects: 10_000,
    maxBytes: 40 * MiB,
    faults: 'rate=5%,seed=1',
    concurrency: 16,
    // Held deletes (15 minutes) come on top of the work itself.
    settleTimeoutMs: 60 * 60_000,
    log: (line) => process.stderr.write(`soak: ${line}\n`),
  };
  for (let index = 0; index < args.length; index++) {
    const name = args[index];
    const value = args[++index];
    if (value === undefined) throw new Error(`${name} needs a value`);
    if (name === '--objects') options.objects = Number(value);
    else if (name === '--max-size') options.maxBytes = parseSize(value);
    else if (name === '--faults') options.faults = value;
    else if (name === '--kills') {
      options.crash = { kills: Number(value), seed: 1, minGapMs: 3_000, maxGapMs: 10_000 };
    } else throw new Error(`soak: unknown option ${name}`);
  }
  const report = await soak(options, cleanup);
  process.stdout.write(`${describeSoak(report)}\n`);
  const faults = Object.values(report.faults).reduce((sum, count) => sum + count, 0);
  if (report.lost.length + report.corrupted.length + report.pingPong.length > 0) {
    process.stdout.write(
      `lost:\n  ${report.lostDetail.slice(0, 20).join('\n  ')}\ncorrupted: ${report.corrupted.slice(0, 10).join(', ')}\nping-pong: ${report.pingPong.slice(0, 10).join(', ')}\n`,
    );
    throw new Error('soak: the sides do not agree with what the users did');
  }
  if (options.crash && report.kills.length < options.crash.kills) {
    throw new Error(`soak: only ${report.kills.length} of ${options.crash.kills} kills were made`);
  }
  if (!options.crash && options.objects >= 10_000 && faults < 500) {
    throw new Error(`soak: only ${faults} faults were injected (at least 500 expected)`);
  }
}
