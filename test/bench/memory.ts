import { createHash, randomFill } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  FUNCTION_RESERVED_BYTES,
  functionMemoryBudget,
  type MemoryPlan,
  planMemory,
  STREAMED_LANE_BYTES,
} from '../../src/core/memory-plan.ts';
import {
  AZURE_BLOCK_BLOB_LIMITS,
  formatBytes,
  parseSize,
  S3_LIMITS,
} from '../../src/core/range-plan.ts';
import { COPY_BATCH_SIZE, COPY_MEMORY_MB } from '../../src/queue/timing.ts';
import type { StoreLimits } from '../../src/stores/object-store.ts';
import type { Cleanup } from './lifecycle.ts';
import { DIRECTIONS, type Direction } from './model.ts';
import { requireGnuTime, runTimed, tail } from './run.ts';
import { bundleSnapshot, parseCopySummary, s3azEnvironment } from './s3az.ts';
import { startBenchStack } from './stack.ts';
import { type BenchStores, blockId, type Side } from './stores.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
const CONTAINER = 'bench-memory';
/** The reference object: small enough that its RSS is the copier's base plus its lanes. */
const SMALL_SIZE = 64 * MiB;
/** Parts of the sources as they are created: under the emulators' 11 MiB body cap. */
const SOURCE_PART_SIZE = 8 * MiB;
/** What `s3az copy` runs with, in every measurement. */
const COPY = { memory: '256MiB', partSize: 8 * MiB, concurrency: 8 } as const;
/** The copy function the 5 TiB plan is made for. */
const PLAN_SIZE = 5 * TiB;
/** Peak RSS of the big copy / that of the small one, at most. */
const RATIO_TARGET = 1.3;

const USAGE = `usage: npm run bench -- memory [--size 2GiB] [--json]

Copies a ${formatBytes(SMALL_SIZE)} object and a --size object (default 2 GiB) S3 -> Azure and Azure -> S3
with \`s3az copy --stream --memory ${COPY.memory} --part-size ${formatBytes(COPY.partSize)} --concurrency ${COPY.concurrency}\`,
checks each copy's SHA-256, and compares the copier's peak RSS across the two sizes (target:
ratio <= ${RATIO_TARGET}). Then prints the memory plan of a ${formatBytes(PLAN_SIZE)} copy in a ${COPY_MEMORY_MB} MB copy function
with ${COPY_BATCH_SIZE} records a batch. --json prints the results as JSON on stdout; progress goes to stderr.`;

export interface MemoryOptions {
  size: number;
  json: boolean;
}

/** One `s3az copy`, measured. */
export interface MemoryRun {
  direction: Direction;
  size: number;
  /** `maxRssBytes` of the copy's `--json` summary (its own peak RSS). */
  maxRssBytes: number;
  /** GNU time %M of the same process, for comparison. */
  timeMaxRssBytes: number;
  /** `mibPerSecond` of the copy's summary (its own timer). */
  mibPerSecond: number;
  /** Wall time of the command, start-up included. */
  wallSeconds: number;
  transfer: string[];
  verified: 'size+sha256';
}

/** One direction's plan for a 5 TiB object, next to the plan of the measured copies. */
export interface PlanRow {
  direction: Direction;
  destination: Side;
  streamsParts: boolean;
  budget: number;
  plan: { partSize: number; parts: number; concurrency: number; peakBytes: number };
  measured: { partSize: number; parts: number; concurrency: number; peakBytes: number };
  /** 5 TiB plan's bytes held / the measured copies' lanes. */
  scaled: number;
  /** Measured peak RSS of the big copy + the extra bytes the 5 TiB plan holds. */
  estimatedRssBytes: number | undefined;
}

export function parseMemoryOptions(args: readonly string[]): MemoryOptions {
  const options: MemoryOptions = { size: 2 * GiB, json: false };
  for (let index = 0; index < args.length; index++) {
    const name = args[index];
    if (name === '--json') options.json = true;
    else if (name === '--size') {
      const text = args[++index];
      if (text === undefined || text.startsWith('--')) throw new Error('--size needs a value');
      options.size = parseSize(text);
      if (options.size < 1) throw new Error('--size must be at least 1 byte');
    } else if (name === '--help' || name === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else throw new Error(`unknown option "${name}"\n${USAGE}`);
  }
  return options;
}

const fill = (buffer: Buffer) =>
  new Promise<Buffer>((resolve, reject) =>
    randomFill(buffer, (error, filled) => (error ? reject(error) : resolve(filled))),
  );

/**
 * Writes `size` random bytes as `key` on one side only, generated part by part (S3 multipart
 * upload or Azure staged blocks of `partSize`, four in flight), so no more than a few parts are
 * held at once; returns the content's SHA-256.
 */
export async function createRandomSource(
  stores: BenchStores,
  side: Side,
  key: string,
  size: number,
  partSize: number = SOURCE_PART_SIZE,
): Promise<string> {
  const hash = createHash('sha256');
  const bucket = stores.container;
  let uploadId: string | undefined;
  if (side === 's3') {
    uploadId = (
      await stores.s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }))
    ).UploadId;
  }
  const blob = stores.azure.getBlockBlobClient(key);
  const parts: { PartNumber: number; ETag: string }[] = [];
  const blocks: string[] = [];
  const inFlight = new Set<Promise<void>>();
  try {
    for (let start = 0, partNumber = 1; start < size; start += partSize, partNumber++) {
      const body = await fill(Buffer.allocUnsafe(Math.min(partSize, size - start)));
      hash.update(body);
      const number = partNumber;
      const upload =
        side === 's3'
          ? stores.s3
              .send(
                new UploadPartCommand({
                  Bucket: bucket,
                  Key: key,
                  UploadId: uploadId,
                  PartNumber: number,
                  Body: body,
                  ContentLength: body.length,
                }),
              )
              .then(({ ETag }) => {
                parts.push({ PartNumber: number, ETag: ETag ?? '' });
              })
          : blob.stageBlock(blockId(number), body, body.length).then(() => undefined);
      if (side === 'azure') blocks.push(blockId(number));
      inFlight.add(upload);
      void upload.finally(() => inFlight.delete(upload)).catch(() => undefined);
      if (inFlight.size >= 4) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  } catch (error) {
    if (uploadId !== undefined) {
      await stores.s3
        .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))
        .catch(() => undefined);
    }
    throw error;
  }
  if (side === 's3') {
    await stores.s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts.sort((a, b) => a.PartNumber - b.PartNumber) },
      }),
    );
  } else {
    await blob.commitBlockList(blocks);
  }
  return hash.digest('hex');
}

const uri = (side: Side, key: string) => `${side === 's3' ? 's3' : 'az'}://${CONTAINER}/${key}`;
const mib = (bytes: number) => (bytes / MiB).toFixed(1);

/** A Markdown table with padded columns; `right` marks right-aligned columns. */
export function table(headers: string[], rows: string[][], right: boolean[]): string[] {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: string[]) =>
    `| ${cells
      .map((cell, column) =>
        right[column] ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0),
      )
      .join(' | ')} |`;
  const rule = `|${widths.map((width, column) => (right[column] ? `${'-'.repeat(width + 1)}:` : '-'.repeat(width + 2))).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)];
}

function summaryOf(plan: MemoryPlan) {
  return {
    partSize: plan.plan.mode === 'staged' ? plan.plan.partSize : 0,
    parts: plan.plan.mode === 'staged' ? plan.plan.parts.length : 1,
    concurrency: plan.concurrency,
    peakBytes: plan.peakBytes,
  };
}

/** The plan of a 5 TiB copy in a copy function, and of the measured copies, per direction. */
export function planRows(runs: readonly MemoryRun[], bigSize: number): PlanRow[] {
  const budget = functionMemoryBudget(
    { AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(COPY_MEMORY_MB) },
    COPY_BATCH_SIZE,
    COPY_MEMORY_MB,
  );
  return (Object.keys(DIRECTIONS) as Direction[]).map((direction) => {
    const destination = DIRECTIONS[direction].destination;
    const limits: StoreLimits = destination === 's3' ? S3_LIMITS : AZURE_BLOCK_BLOB_LIMITS;
    const streamsParts = destination === 's3';
    const common = { partSize: COPY.partSize, concurrency: COPY.concurrency, limits, streamsParts };
    const plan = summaryOf(planMemory(PLAN_SIZE, { ...common, budget }));
    const measured = summaryOf(planMemory(bigSize, { ...common, budget: parseSize(COPY.memory) }));
    const big = runs.find((run) => run.direction === direction && run.size === bigSize);
    return {
      direction,
      destination,
      streamsParts,
      budget,
      plan,
      measured,
      scaled: plan.peakBytes / measured.peakBytes,
      estimatedRssBytes: big ? big.maxRssBytes + plan.peakBytes - measured.peakBytes : undefined,
    };
  });
}

/** `npm run bench -- memory`: see {@link USAGE}. */
export async function runMemory(args: readonly string[], cleanup: Cleanup): Promise<void> {
  const options = parseMemoryOptions(args);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  requireGnuTime();
  const smallSize = Math.min(SMALL_SIZE, options.size);
  const sizes = [smallSize, options.size];

  const { bundle, source } = await bundleSnapshot(cleanup, 'bench-memory', log);
  log('starting the emulators...');
  const stack = await startBenchStack(cleanup, CONTAINER);
  const { stores } = stack;
  const env = s3azEnvironment(stack.env);

  const runs: MemoryRun[] = [];
  for (const direction of Object.keys(DIRECTIONS) as Direction[]) {
    const { source: from, destination: to, label } = DIRECTIONS[direction];
    for (const size of sizes) {
      const what = `${label} (${formatBytes(size)})`;
      const sourceKey = `memory/source-${direction}-${size}.bin`;
      const destinationKey = `memory/copy-${direction}-${size}.bin`;
      // Removed even when a step fails, so the emulators do not keep gigabytes for nothing.
      const remove = async () => {
        await stores.delete(from, sourceKey).catch(() => undefined);
        await stores.delete(to, destinationKey).catch(() => undefined);
      };
      cleanup.add(remove);
      log(`${what}: creating the source on ${from}...`);
      const sha256 = await createRandomSource(stores, from, sourceKey, size);
      log(`${what}: s3az copy...`);
      const run = await runTimed(
        process.execPath,
        [
          bundle,
          'copy',
          uri(from, sourceKey),
          uri(to, destinationKey),
          '--stream',
          '--json',
          '--memory',
          COPY.memory,
          '--part-size',
          String(COPY.partSize),
          '--concurrency',
          String(COPY.concurrency),
        ],
        env,
      );
      if (run.code !== 0) {
        throw new Error(
          `${what}: s3az copy failed with exit code ${run.code}: ${tail(run.stderr)}${run.stdout ? ` | stdout: ${tail(run.stdout)}` : ''}`,
        );
      }
      const summary = parseCopySummary(run.stdout, what);
      if (summary.objects !== 1 || summary.failed !== 0 || summary.bytes !== size) {
        throw new Error(
          `${what}: reported ${JSON.stringify(summary)}; expected 1 object of ${size} bytes`,
        );
      }
      const written = await stores.size(to, destinationKey);
      if (written !== size) throw new Error(`${what}: wrote ${written} bytes, expected ${size}`);
      log(`${what}: checking SHA-256 of the copy...`);
      const copied = await stores.sha256(to, destinationKey);
      if (copied !== sha256)
        throw new Error(`${what}: the copy's SHA-256 differs from the source's`);
      await remove();
      const sample: MemoryRun = {
        direction,
        size,
        maxRssBytes: summary.maxRssBytes,
        timeMaxRssBytes: run.maxRssBytes,
        mibPerSecond: summary.mibPerSecond,
        wallSeconds: run.seconds,
        transfer: summary.transfer,
        verified: 'size+sha256',
      };
      runs.push(sample);
      log(
        `  ${what}: peak RSS ${mib(sample.maxRssBytes)} MiB (GNU time ${mib(sample.timeMaxRssBytes)} MiB), ${sample.mibPerSecond.toFixed(1)} MiB/s, ${summary.transfer.join(',')}, identical`,
      );
    }
  }

  const ratios = (Object.keys(DIRECTIONS) as Direction[]).map((direction) => {
    const of = (size: number) =>
      runs.find((run) => run.direction === direction && run.size === size)?.maxRssBytes ?? 0;
    const ratio = of(options.size) / of(smallSize);
    return { direction, ratio, met: ratio <= RATIO_TARGET };
  });
  const plans = planRows(runs, options.size);
  const result = {
    options: { ...options, smallSize, ...COPY, stream: true },
    source,
    node: process.version,
    runs,
    ratios,
    targetRatio: RATIO_TARGET,
    plan: {
      objectSize: PLAN_SIZE,
      copyMemoryMb: COPY_MEMORY_MB,
      batch: COPY_BATCH_SIZE,
      rows: plans,
    },
  };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    printMemoryReport(result.runs, ratios, plans, smallSize, options.size, source);
  }
  const missed = ratios.filter((ratio) => !ratio.met);
  if (missed.length > 0) {
    throw new Error(
      `peak RSS ratio above ${RATIO_TARGET}: ${missed.map((each) => `${DIRECTIONS[each.direction].label} ${each.ratio.toFixed(3)}`).join(', ')}`,
    );
  }
}

function printMemoryReport(
  runs: readonly MemoryRun[],
  ratios: ReadonlyArray<{ direction: Direction; ratio: number; met: boolean }>,
  plans: readonly PlanRow[],
  smallSize: number,
  bigSize: number,
  source: { commit: string; uncommitted: string[] },
): void {
  const rssRows = runs.map((run) => [
    DIRECTIONS[run.direction].label,
    formatBytes(run.size),
    run.transfer.join(','),
    mib(run.maxRssBytes),
    mib(run.timeMaxRssBytes),
    run.mibPerSecond.toFixed(1),
    run.wallSeconds.toFixed(1),
  ]);
  const ratioRows = ratios.map((ratio) => [
    DIRECTIONS[ratio.direction].label,
    `${ratio.ratio.toFixed(3)}x`,
    `<= ${RATIO_TARGET}x`,
    ratio.met ? 'met' : 'MISSED',
  ]);
  const planTableRows = plans.map((row) => [
    DIRECTIONS[row.direction].label,
    row.destination,
    String(row.streamsParts),
    formatBytes(row.plan.partSize),
    String(row.plan.parts),
    String(row.plan.concurrency),
    mib(row.plan.peakBytes),
    mib(row.budget),
    mib(row.measured.peakBytes),
    `${row.scaled.toFixed(2)}x`,
    row.estimatedRssBytes === undefined ? 'n/a' : mib(row.estimatedRssBytes),
  ]);
  const lines = [
    `Memory: s3az copy --stream --memory ${COPY.memory} --part-size ${formatBytes(COPY.partSize)} --concurrency ${COPY.concurrency}; ${formatBytes(smallSize)} and ${formatBytes(bigSize)} objects, one run each.`,
    `s3az: bundled from the sources at ${source.commit || 'an unknown commit'}${source.uncommitted.length > 0 ? ` + uncommitted ${source.uncommitted.join(', ')}` : ''}; node ${process.version}.`,
    '',
    ...table(
      ['direction', 'size', 'transfer', 'peak RSS (MiB)', 'GNU time RSS (MiB)', 'MiB/s', 'wall s'],
      rssRows,
      [false, true, false, true, true, true, true],
    ),
    '',
    `Peak RSS ratio, ${formatBytes(bigSize)} / ${formatBytes(smallSize)}:`,
    '',
    ...table(['direction', 'ratio', 'target', 'result'], ratioRows, [false, true, true, false]),
    '',
    `Plan for a ${formatBytes(PLAN_SIZE)} object in a ${COPY_MEMORY_MB} MB copy function, ${COPY_BATCH_SIZE} records a batch (budget per copy = (${COPY_MEMORY_MB} MiB - ${formatBytes(FUNCTION_RESERVED_BYTES)} reserved) / ${COPY_BATCH_SIZE}), preferred parts ${formatBytes(COPY.partSize)}, concurrency ${COPY.concurrency}:`,
    '',
    ...table(
      [
        'direction',
        'destination',
        'streamsParts',
        'part size',
        'parts',
        'in flight',
        'held (MiB)',
        'budget (MiB)',
        'measured lanes (MiB)',
        'scaled',
        'est. RSS (MiB)',
      ],
      planTableRows,
      [false, false, false, true, true, true, true, true, true, true, true],
    ),
    '',
    'Notes:',
    "- peak RSS: `maxRssBytes` of the copy's --json summary (process.resourceUsage().maxRSS); GNU time %M of the same command next to it. MiB/s: the summary's own timer (no start-up). Every copy's size and SHA-256 are checked against the source, then both objects are deleted.",
    `- held: the plan's peakBytes, what the copy holds at once: ranges in flight x ${formatBytes(STREAMED_LANE_BYTES)} (STREAMED_LANE_BYTES) where the destination takes streamed parts (S3), ranges in flight x part size where each part is held whole (Azure, Content-MD5 up front).`,
    `- measured lanes: the plan of the measured ${formatBytes(bigSize)} copies (budget ${COPY.memory}). scaled = held (${formatBytes(PLAN_SIZE)}) / measured lanes; est. RSS = measured peak RSS of the ${formatBytes(bigSize)} copy + (held - measured lanes), an extrapolation, not a measurement.`,
    ...plans.map((row) =>
      row.streamsParts
        ? `- ${DIRECTIONS[row.direction].label}: the destination streams parts, so the bytes held do not depend on the part size (${formatBytes(row.plan.partSize)} at ${formatBytes(PLAN_SIZE)} vs ${formatBytes(row.measured.partSize)} measured): ${row.plan.concurrency} x ${formatBytes(STREAMED_LANE_BYTES)} either way, ${row.scaled.toFixed(2)}x the measured lanes.`
        : `- ${DIRECTIONS[row.direction].label}: parts are held whole; ${formatBytes(PLAN_SIZE)} needs parts of ${formatBytes(row.plan.partSize)} (${row.plan.parts} of them, Azure's block limit), so the ${formatBytes(row.budget)} budget holds ${row.plan.concurrency} in flight: ${mib(row.plan.peakBytes)} MiB, ${row.scaled.toFixed(2)}x the measured lanes.`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
