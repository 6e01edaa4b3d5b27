import { mkdirSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE } from '../../src/cli/copy-defaults.ts';
import { formatBytes, parseSize } from '../../src/core/range-plan.ts';
import { type FaultProxy, startFaultProxy } from '../../src/local/fault-proxy.ts';
import { type CurvePanel, type CurvesPlot, renderCurvesSvg } from './curves-svg.ts';
import type { Cleanup } from './lifecycle.ts';
import { DIRECTIONS, type Direction } from './model.ts';
import { readOptions } from './options.ts';
import { median, requireGnuTime, runTimed, tail } from './run.ts';
import { bundleSnapshot, parseCopySummary, ROOT, s3azEnvironment } from './s3az.ts';
import { startBenchStack } from './stack.ts';
import type { Side, StoreEnvironment } from './stores.ts';

const MiB = 1024 * 1024;
/** Parts of the source as it is created: under the S3 emulator's 11 MiB body cap. */
const SOURCE_PART_SIZE = 8 * MiB;
const CONTAINER = 'bench';
const SOURCE_KEY = 'source/curves.bin';

/** Options of `npm run bench -- curves`. */
export interface CurvesOptions {
  /** Size of the object copied, bytes. */
  size: number;
  /** The modelled round trip, ms. */
  delayMs: number;
  /** The modelled bandwidth of each connection, bytes a second. */
  bandwidth: number;
  pullConcurrency: number[];
  streamConcurrency: number[];
  pullPartSizes: number[];
  streamPartSizes: number[];
  runs: number;
  json: boolean;
  /** Where curves.json and curves.svg go. */
  out: string;
}

const USAGE = `usage: npm run bench -- curves [--size 512MiB] [--delay-ms 40] [--bandwidth 16MiB]
    [--pull-concurrency 1,2,4,8,16,32] [--stream-concurrency 1,2,4,8,16]
    [--pull-part-sizes 8MiB,16MiB] [--stream-part-sizes 4MiB,8MiB] [--runs 1]
    [--json] [--out docs/bench]

Puts a modelled link to a distant cloud in front of each local emulator (a proxy holding every
request for one round trip of --delay-ms, and capping each connection at --bandwidth a second
both ways), then copies one --size object with \`s3az copy --part-size P --concurrency C\` for
each part size and concurrency: S3 -> Azure by Azure's server-side pull (whose reads of the
presigned S3 URL cross the S3 link), and Azure -> S3 streamed through the copier. Each
direction is also copied once without the link at s3az's defaults, for reference. The copier's
own timer is used (no process start-up). Writes curves.json and curves.svg to --out; --json
also prints the results on stdout. Progress goes to stderr.`;

/** Parses the curves mode's arguments (the mode name already removed). */
export function parseCurvesOptions(args: readonly string[]): CurvesOptions {
  const options: CurvesOptions = {
    size: 512 * MiB,
    delayMs: 40,
    bandwidth: 16 * MiB,
    pullConcurrency: [1, 2, 4, 8, 16, 32],
    streamConcurrency: [1, 2, 4, 8, 16],
    pullPartSizes: [8 * MiB, 16 * MiB],
    streamPartSizes: [4 * MiB, 8 * MiB],
    runs: 1,
    json: false,
    out: join(ROOT, 'docs/bench'),
  };
  readOptions(args, (name, { value, whole }) => {
    const list = <T>(text: string, item: (part: string) => T): T[] => {
      const items = text
        .split(',')
        .map((part) => part.trim())
        .filter((part) => part !== '')
        .map(item);
      if (items.length === 0) throw new Error(`${name} needs at least one value`);
      return [...new Set(items)].sort((a, b) => Number(a) - Number(b));
    };
    if (name === '--json') options.json = true;
    else if (name === '--size') options.size = parseSize(value());
    else if (name === '--delay-ms') options.delayMs = whole(value(), 0);
    else if (name === '--bandwidth') options.bandwidth = parseSize(value());
    else if (name === '--pull-concurrency')
      options.pullConcurrency = list(value(), (part) => whole(part, 1));
    else if (name === '--stream-concurrency')
      options.streamConcurrency = list(value(), (part) => whole(part, 1));
    else if (name === '--pull-part-sizes') options.pullPartSizes = list(value(), parseSize);
    else if (name === '--stream-part-sizes') options.streamPartSizes = list(value(), parseSize);
    else if (name === '--runs') options.runs = whole(value(), 1);
    else if (name === '--out') {
      const dir = value();
      options.out = isAbsolute(dir) ? dir : join(process.cwd(), dir);
    } else if (name === '--help' || name === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else throw new Error(`unknown option "${name}"\n${USAGE}`);
  });
  return options;
}

/** One copy, as measured. */
export interface CurveRun {
  direction: Direction;
  /** Through the modelled link, or straight to the emulators (the reference). */
  link: boolean;
  /** `--part-size` passed (the reference passes none: s3az's default, recorded here). */
  partSize: number;
  /** `--concurrency` passed (the reference passes none: s3az's default, recorded here). */
  concurrency: number;
  round: number;
  size: number;
  /** The copier's own duration (its --json summary), without process start-up. */
  seconds: number;
  /** Wall time of the command, start-up included. */
  wallSeconds: number;
  mibPerSecond: number;
  /** `pull` or `stream`, as s3az reports it. */
  transfer: string;
  /** Requests in flight at once at each link's proxy (0 for the reference), and requests seen. */
  peakInFlight: Record<Side, number>;
  requests: Record<Side, number>;
  /** CPU of this process during the copy: the two proxies, mostly (0 for the reference). */
  proxyCpuSeconds: number;
}

export interface CurvesResult {
  options: CurvesOptions;
  source: { commit: string; uncommitted: string[] };
  node: string;
  date: string;
  defaults: { partSize: number; concurrency: number };
  runs: CurveRun[];
}

/** The environment that sends `s3az` through the two proxies. */
export function linkEnvironment(
  env: StoreEnvironment,
  s3Proxy: string,
  azureProxy: string,
): StoreEnvironment {
  const connection = env.AZURE_STORAGE_CONNECTION_STRING;
  const endpoint = /BlobEndpoint=([^;]+)/.exec(connection)?.[1];
  if (!endpoint) throw new Error(`no BlobEndpoint= in ${connection}`);
  // Keep the account path (/devstoreaccount1); only the origin moves to the proxy.
  const account = new URL(endpoint).pathname.replace(/\/$/, '');
  return {
    ...env,
    AWS_ENDPOINT_URL_S3: s3Proxy,
    AZURE_STORAGE_CONNECTION_STRING: connection.replace(
      `BlobEndpoint=${endpoint}`,
      `BlobEndpoint=${azureProxy}${account}`,
    ),
  };
}

/** `npm run bench -- curves`: see {@link USAGE}. */
export async function runCurves(args: readonly string[], cleanup: Cleanup): Promise<void> {
  const options = parseCurvesOptions(args);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  requireGnuTime();
  const { bundle, source } = await bundleSnapshot(cleanup, 'curves', log);

  log('starting the emulators...');
  const stack = await startBenchStack(cleanup, CONTAINER);
  const { stores } = stack;
  log(`creating a random ${formatBytes(options.size)} source object on both sides...`);
  const sha256 = await stores.createRandomObject(SOURCE_KEY, options.size, SOURCE_PART_SIZE);

  const shape = { delayMs: options.delayMs, bytesPerSecond: options.bandwidth };
  const plan = { rate: 0, seed: 1, kinds: [] };
  const proxies: Record<Side, FaultProxy> = {
    s3: await startFaultProxy({ store: 's3', target: stack.emulators.s3Endpoint, plan, shape }),
    azure: await startFaultProxy({
      store: 'azure',
      target: new URL(stack.emulators.azureAccountUrl).origin,
      plan,
      shape,
    }),
  };
  cleanup.add(() => Promise.all([proxies.s3.close(), proxies.azure.close()]));
  const plainEnv = s3azEnvironment(stack.env);
  const linkEnv = s3azEnvironment(linkEnvironment(stack.env, proxies.s3.url, proxies.azure.url));
  log(
    `link: ${options.delayMs} ms round trip, ${formatBytes(options.bandwidth)}/s per connection (S3 via ${proxies.s3.url}, Azure via ${proxies.azure.url})`,
  );

  const result: CurvesResult = {
    // Recorded relative to the repository, as the committed docs/bench/curves.json shows it.
    options: { ...options, out: relative(ROOT, options.out) || '.' },
    source,
    node: process.version,
    date: new Date().toISOString(),
    defaults: { partSize: DEFAULT_PART_SIZE, concurrency: DEFAULT_CONCURRENCY },
    runs: [],
  };
  const checked = new Set<string>();
  let counter = 0;
  const started = Date.now();

  const copy = async (
    direction: Direction,
    link: boolean,
    partSize: number,
    concurrency: number,
    round: number,
  ): Promise<CurveRun> => {
    counter += 1;
    const { source: from, destination: to } = DIRECTIONS[direction];
    const uri = (side: Side, key: string) => `${side === 's3' ? 's3' : 'az'}://${CONTAINER}/${key}`;
    const destinationKey = `copies/curves-${counter}-${direction}.bin`;
    const requestsBefore = {
      s3: proxies.s3.counts().requests,
      azure: proxies.azure.counts().requests,
    };
    proxies.s3.takePeakInFlight();
    proxies.azure.takePeakInFlight();
    const cpuBefore = process.cpuUsage();
    const run = await runTimed(
      process.execPath,
      [
        bundle,
        'copy',
        uri(from, SOURCE_KEY),
        uri(to, destinationKey),
        '--json',
        // The reference runs at s3az's defaults: no flags.
        ...(link ? ['--part-size', String(partSize), '--concurrency', String(concurrency)] : []),
      ],
      link ? linkEnv : plainEnv,
    );
    const cpu = process.cpuUsage(cpuBefore);
    const peakInFlight = {
      s3: proxies.s3.takePeakInFlight(),
      azure: proxies.azure.takePeakInFlight(),
    };
    const requests = {
      s3: proxies.s3.counts().requests - requestsBefore.s3,
      azure: proxies.azure.counts().requests - requestsBefore.azure,
    };
    const what = `${DIRECTIONS[direction].label} ${link ? `--part-size ${formatBytes(partSize)} --concurrency ${concurrency}` : 'without the link'}`;
    if (run.code !== 0) {
      throw new Error(
        `${what} failed with exit code ${run.code}: ${tail(run.stderr)}${run.stdout ? ` | stdout: ${tail(run.stdout)}` : ''}`,
      );
    }
    const summary = parseCopySummary(run.stdout, what);
    if (summary.objects !== 1 || summary.failed !== 0 || summary.bytes !== options.size) {
      throw new Error(
        `${what} reported ${JSON.stringify(summary)}; expected 1 object of ${options.size} bytes`,
      );
    }
    const transfer = summary.transfer.join(',');
    const expected = direction === 's3-to-azure' ? 'pull' : 'stream';
    if (transfer !== expected)
      throw new Error(`${what}: s3az reported ${transfer}, not ${expected}`);
    // Both legs of each copy must cross the link: for the pull, Azure's reads of the presigned
    // URL go through the S3 proxy too.
    if (link && (requests.s3 === 0 || requests.azure === 0)) {
      throw new Error(`${what}: the copy did not cross both links (${JSON.stringify(requests)})`);
    }
    if (!link && requests.s3 + requests.azure > 0) {
      throw new Error(`${what}: the reference copy went through the link`);
    }
    const written = await stores.size(to, destinationKey);
    if (written !== options.size) {
      throw new Error(`${what} wrote ${written} bytes, expected ${options.size}`);
    }
    // The content is checked on the first copy each way; later ones check the size.
    if (!checked.has(direction)) {
      if ((await stores.sha256(to, destinationKey)) !== sha256) {
        throw new Error(`${what}: the copy's SHA-256 differs from the source's`);
      }
      checked.add(direction);
    }
    await stores.delete(to, destinationKey);
    const sample: CurveRun = {
      direction,
      link,
      partSize,
      concurrency,
      round,
      size: options.size,
      seconds: summary.seconds,
      wallSeconds: run.seconds,
      mibPerSecond: options.size / MiB / summary.seconds,
      transfer,
      peakInFlight,
      requests,
      proxyCpuSeconds: (cpu.user + cpu.system) / 1e6,
    };
    log(
      `  ${DIRECTIONS[direction].label.padEnd(12)} ${(link ? 'link' : 'no link').padEnd(8)} ${formatBytes(partSize).padStart(9)} ${String(concurrency).padStart(4)} ${sample.seconds.toFixed(2).padStart(8)} ${sample.mibPerSecond.toFixed(1).padStart(8)} ${`${peakInFlight.s3}/${peakInFlight.azure}`.padStart(10)} ${`${requests.s3}/${requests.azure}`.padStart(10)} ${sample.proxyCpuSeconds.toFixed(2).padStart(9)} ${((Date.now() - started) / 1000).toFixed(0).padStart(7)}`,
    );
    return sample;
  };

  log(
    `  ${'direction'.padEnd(12)} ${'path'.padEnd(8)} ${'part'.padStart(9)} ${'conc'.padStart(4)} ${'seconds'.padStart(8)} ${'MiB/s'.padStart(8)} ${'peak s3/az'.padStart(10)} ${'reqs s3/az'.padStart(10)} ${'proxy CPU'.padStart(9)} ${'elapsed'.padStart(7)}`,
  );
  const grid: Record<Direction, { partSizes: number[]; concurrency: number[] }> = {
    's3-to-azure': { partSizes: options.pullPartSizes, concurrency: options.pullConcurrency },
    'azure-to-s3': { partSizes: options.streamPartSizes, concurrency: options.streamConcurrency },
  };
  for (const direction of Object.keys(DIRECTIONS) as Direction[]) {
    result.runs.push(await copy(direction, false, DEFAULT_PART_SIZE, DEFAULT_CONCURRENCY, 0));
  }
  for (let round = 0; round < options.runs; round++) {
    for (const direction of Object.keys(DIRECTIONS) as Direction[]) {
      for (const partSize of grid[direction].partSizes) {
        for (const concurrency of grid[direction].concurrency) {
          result.runs.push(await copy(direction, true, partSize, concurrency, round));
        }
      }
    }
  }

  mkdirSync(options.out, { recursive: true });
  const jsonPath = join(options.out, 'curves.json');
  const svgPath = join(options.out, 'curves.svg');
  writeFileSync(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(svgPath, renderCurvesSvg(curvesPlot(result)));
  printSummary(result, log);
  log(`wrote ${jsonPath} and ${svgPath} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  if (options.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

/** Median MiB/s of the link runs of one direction, part size and concurrency. */
function medianOf(
  result: CurvesResult,
  direction: Direction,
  partSize: number,
  concurrency: number,
): number {
  return median(
    result.runs
      .filter(
        (run) =>
          run.link &&
          run.direction === direction &&
          run.partSize === partSize &&
          run.concurrency === concurrency,
      )
      .map((run) => run.mibPerSecond),
  );
}

/**
 * Whether the destination's proxy saw every part of the object in flight at once in each run
 * of one point: the object, not the concurrency, limited it.
 */
function allPartsInFlight(
  result: CurvesResult,
  direction: Direction,
  partSize: number,
  concurrency: number,
): boolean {
  const runs = result.runs.filter(
    (run) =>
      run.link &&
      run.direction === direction &&
      run.partSize === partSize &&
      run.concurrency === concurrency,
  );
  const destination = DIRECTIONS[direction].destination;
  return (
    runs.length > 0 &&
    runs.every((run) => run.peakInFlight[destination] >= Math.ceil(run.size / run.partSize))
  );
}

/**
 * How many Put Block From URL the pull kept in flight per --concurrency, as the Azure proxy
 * saw them, where the object had blocks to spare: one factor when every such run agrees.
 */
export function measuredPullFactor(result: CurvesResult): number | undefined {
  const ratios = result.runs
    .filter(
      (run) =>
        run.link &&
        run.direction === 's3-to-azure' &&
        // The blocks of the object limit what can be in flight; the commit adds one more.
        run.peakInFlight.azure < Math.ceil(run.size / run.partSize),
    )
    .map((run) => run.peakInFlight.azure / run.concurrency);
  const first = ratios[0];
  return first !== undefined && ratios.every((ratio) => ratio === first) ? first : undefined;
}

/** The plot of a result: the medians of its runs. */
export function curvesPlot(result: CurvesResult): CurvesPlot {
  const { options, defaults } = result;
  const factor = measuredPullFactor(result);
  const panel = (
    direction: Direction,
    partSizes: number[],
    concurrency: number[],
    title: string,
    xLabel: string,
  ): CurvePanel => {
    const reference = result.runs.find((run) => !run.link && run.direction === direction);
    return {
      title,
      xLabel,
      lines: partSizes.map((partSize) => ({
        label: `${formatBytes(partSize).replace('.0 ', ' ')} parts`,
        isDefaultPartSize: partSize === defaults.partSize,
        points: concurrency.map((value) => ({
          concurrency: value,
          mibPerSecond: medianOf(result, direction, partSize, value),
          allPartsInFlight: allPartsInFlight(result, direction, partSize, value),
        })),
      })),
      ...(reference && {
        reference: {
          label: `no link, s3az defaults: ${reference.mibPerSecond.toFixed(0)} MiB/s`,
          mibPerSecond: reference.mibPerSecond,
        },
      }),
    };
  };
  const size = formatBytes(options.size).replace('.0 ', ' ');
  const bandwidth = formatBytes(options.bandwidth).replace('.0 ', ' ');
  return {
    title: `s3az copy of ${size} over a modelled link: ${options.delayMs} ms round trip, ${bandwidth}/s per connection`,
    subtitle: `local emulators behind shaping proxies; median of ${options.runs} run${options.runs === 1 ? '' : 's'}; ring: s3az default (${formatBytes(defaults.partSize).replace('.0 ', ' ')} parts, --concurrency ${defaults.concurrency})`,
    defaultConcurrency: defaults.concurrency,
    panels: [
      panel(
        's3-to-azure',
        options.pullPartSizes,
        options.pullConcurrency,
        'S3 -> Azure: server-side pull',
        factor === undefined
          ? '--concurrency (the pull keeps a multiple of it in flight)'
          : `--concurrency (pull: ${factor} x that Put Block From URL in flight)`,
      ),
      panel(
        'azure-to-s3',
        options.streamPartSizes,
        options.streamConcurrency,
        'Azure -> S3: streamed through s3az',
        '--concurrency (ranges streamed at once)',
      ),
    ],
  };
}

function printSummary(result: CurvesResult, log: (line: string) => void): void {
  const { options } = result;
  log('');
  log(
    `summary: MiB/s (median of ${options.runs}) of a ${formatBytes(options.size)} copy over a ${options.delayMs} ms, ${formatBytes(options.bandwidth)}/s-per-connection link`,
  );
  const factor = measuredPullFactor(result);
  if (factor !== undefined) {
    log(`(the pull kept ${factor} x --concurrency Put Block From URL in flight, as measured)`);
  }
  const table = (direction: Direction, partSizes: number[], concurrency: number[]) => {
    log(`${DIRECTIONS[direction].label}`);
    log(
      `  ${'part \\ --concurrency'.padEnd(22)}${concurrency.map((c) => String(c).padStart(8)).join('')}`,
    );
    for (const partSize of partSizes) {
      log(
        `  ${formatBytes(partSize).padEnd(22)}${concurrency
          .map((c) =>
            `${medianOf(result, direction, partSize, c).toFixed(1)}${allPartsInFlight(result, direction, partSize, c) ? '*' : ' '}`.padStart(
              8,
            ),
          )
          .join('')}`,
      );
    }
    const reference = result.runs.find((run) => !run.link && run.direction === direction);
    if (reference) {
      log(
        `  without the link, s3az defaults (${formatBytes(reference.partSize)}, --concurrency ${reference.concurrency}): ${reference.mibPerSecond.toFixed(1)} MiB/s`,
      );
    }
  };
  table('s3-to-azure', options.pullPartSizes, options.pullConcurrency);
  table('azure-to-s3', options.streamPartSizes, options.streamConcurrency);
  log('(*: every part of the object was in flight at once; more concurrency cannot help it)');
}
