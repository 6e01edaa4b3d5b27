import { mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatBytes, parseSize } from '../../src/core/range-plan.ts';
import { type CpuUsage, startCpuMeter } from './cpu.ts';
import type { Cleanup } from './lifecycle.ts';
import {
  type CopyRun,
  DIRECTIONS,
  type Direction,
  type LimitRun,
  type ThroughputOptions,
  type ThroughputResult,
  type Tool,
} from './model.ts';
import { readOptions } from './options.ts';
import { formatProfiles, summarizeProfiles } from './profile.ts';
import { RCLONE_MISSING, RCLONE_SETTINGS, rcloneEnvironment, rcloneVersion } from './rclone.ts';
import { printThroughputReport } from './report.ts';
import { requireGnuTime, runTimed, type TimedRun, tail } from './run.ts';
import { bundleSnapshot, parseCopySummary, ROOT, s3azEnvironment } from './s3az.ts';
import { startBenchStack } from './stack.ts';
import type { Side } from './stores.ts';

const MiB = 1024 * 1024;
const SMALL_SIZE = 64 * MiB;
/** Parts of the sources as they are created: under the S3 emulator's 11 MiB body cap. */
const SOURCE_PART_SIZE = 8 * MiB;
const CONTAINER = 'bench';
const BIG_KEY = 'source/big.bin';
const SMALL_KEY = 'source/small.bin';
const LIMIT_SCRIPT = join(ROOT, 'test/bench/limit.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

const USAGE = `usage: npm run bench -- [throughput] [--size 256MiB,512MiB] [--runs 3] [--part-size 8MiB] [--concurrency 8] [--profile <dir>] [--json]

For each size, copies one object S3 -> Azure and Azure -> S3 with \`s3az copy\` and \`rclone copyto\`,
alternating, measures the emulators' own limit for each direction, and copies a ${formatBytes(SMALL_SIZE)} object with
s3az as a peak-memory reference. --part-size and --concurrency apply to s3az and to the limit passes;
rclone runs with its defaults. --profile writes V8 CPU profiles of s3az and the emulators (and
rclone's pprof profile) there, and prints where each process's CPU went. --json prints every run as
JSON on stdout; progress goes to stderr.`;

/** Parses the throughput mode's arguments (the mode name already removed). */
export function parseThroughputOptions(args: readonly string[]): ThroughputOptions {
  const options: ThroughputOptions = {
    size: 256 * MiB,
    sizes: [256 * MiB, 512 * MiB],
    runs: 3,
    partSize: 8 * MiB,
    concurrency: 8,
    json: false,
  };
  readOptions(args, (name, { value, whole }) => {
    if (name === '--json') options.json = true;
    else if (name === '--size') {
      options.sizes = value().split(',').map(parseSize);
      options.size = options.sizes[0] ?? options.size;
    } else if (name === '--profile') options.profile = resolve(value());
    else if (name === '--runs') options.runs = whole(value(), 1);
    else if (name === '--part-size') options.partSize = parseSize(value());
    else if (name === '--concurrency') options.concurrency = whole(value(), 1);
    else if (name === '--help' || name === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else throw new Error(`unknown option "${name}"\n${USAGE}`);
  });
  return options;
}

/** Rotates a list by `by` places, so that each round runs the measurements in another order. */
function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/** `npm run bench -- throughput`: see {@link USAGE}. */
export async function runThroughput(args: readonly string[], cleanup: Cleanup): Promise<void> {
  const all = parseThroughputOptions(args);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  requireGnuTime();
  const version = rcloneVersion();
  if (version === undefined) log(RCLONE_MISSING);
  const tools: Tool[] = version === undefined ? ['s3az'] : ['s3az', 'rclone'];

  const { temp, bundle: s3azBundle, source } = await bundleSnapshot(cleanup, 'bench', log);

  if (all.profile) {
    rmSync(all.profile, { recursive: true, force: true });
    mkdirSync(join(all.profile, 'rclone'), { recursive: true });
    // Read by the emulators as they start: each writes its profile when it exits.
    process.env.S3AZ_CPU_PROFILE_DIR = join(all.profile, 'emulators');
  }
  log('starting the emulators...');
  const stack = await startBenchStack(cleanup, CONTAINER);
  if (all.profile) delete process.env.S3AZ_CPU_PROFILE_DIR;
  const { stores } = stack;
  const s3azEnv = s3azEnvironment(stack.env);
  const rcloneEnv =
    version === undefined
      ? undefined
      : rcloneEnvironment(
          {
            s3Endpoint: stack.emulators.s3Endpoint,
            region: stack.emulators.region,
            accessKeyId: stack.emulators.accessKeyId,
            secretAccessKey: stack.emulators.secretAccessKey,
            azureAccountName: stack.emulators.azureAccountName,
            azureAccountKey: stack.emulators.azureAccountKey,
            azureAccountUrl: stack.emulators.azureAccountUrl,
            container: CONTAINER,
          },
          temp,
        );

  log(`creating a random ${formatBytes(SMALL_SIZE)} source object on both sides...`);
  const sha256 = new Map<string, string>([
    [SMALL_KEY, await stores.createRandomObject(SMALL_KEY, SMALL_SIZE, SOURCE_PART_SIZE)],
  ]);
  let counter = 0;
  const results: ThroughputResult[] = [];
  for (const size of all.sizes) {
    const options: ThroughputOptions = { ...all, size };
    log(`creating a random ${formatBytes(size)} source object on both sides...`);
    sha256.set(BIG_KEY, await stores.createRandomObject(BIG_KEY, size, SOURCE_PART_SIZE));

    const result: ThroughputResult = {
      options,
      smallSize: SMALL_SIZE,
      rclone: version === undefined ? undefined : { version, settings: RCLONE_SETTINGS },
      source,
      node: process.version,
      runs: [],
    };

    const copy = async (
      tool: Tool,
      direction: Direction,
      round: number,
      object: 'main' | 'small',
    ): Promise<CopyRun> => {
      const [sourceKey, size] =
        object === 'main' ? [BIG_KEY, options.size] : [SMALL_KEY, SMALL_SIZE];
      counter += 1;
      const { source: from, destination: to } = DIRECTIONS[direction];
      const destinationKey = `copies/${counter}-${tool}-${direction}.bin`;
      const meter = startCpuMeter(stack.processes);
      let run: TimedRun;
      if (tool === 's3az') {
        const uri = (side: Side, key: string) =>
          `${side === 's3' ? 's3' : 'az'}://${CONTAINER}/${key}`;
        run = await runTimed(
          process.execPath,
          [
            ...(options.profile
              ? ['--cpu-prof', `--cpu-prof-dir=${join(options.profile, 's3az', `${counter}`)}`]
              : []),
            s3azBundle,
            'copy',
            uri(from, sourceKey),
            uri(to, destinationKey),
            '--json',
            '--part-size',
            String(options.partSize),
            '--concurrency',
            String(options.concurrency),
          ],
          s3azEnv,
        );
      } else {
        const remote = (side: Side, key: string) =>
          `${side === 's3' ? 's3' : 'az'}:${CONTAINER}/${key}`;
        run = await runTimed(
          'rclone',
          [
            'copyto',
            remote(from, sourceKey),
            remote(to, destinationKey),
            ...(options.profile
              ? ['--cpuprofile', join(options.profile, 'rclone', `${counter}-${direction}.pprof`)]
              : []),
          ],
          rcloneEnv ?? {},
        );
      }
      const cpu = meter.stop();
      const what = `${tool} ${DIRECTIONS[direction].label} (${formatBytes(size)}, round ${round + 1})`;
      if (run.code !== 0) {
        throw new Error(
          `${what} failed with exit code ${run.code}: ${tail(run.stderr)}${run.stdout ? ` | stdout: ${tail(run.stdout)}` : ''}`,
        );
      }
      let selfSeconds: number | undefined;
      let transfer: string | undefined;
      if (tool === 's3az') {
        const summary = parseCopySummary(run.stdout, what);
        if (summary.objects !== 1 || summary.failed !== 0 || summary.bytes !== size) {
          throw new Error(
            `${what} reported ${JSON.stringify(summary)}; expected 1 object of ${size} bytes`,
          );
        }
        selfSeconds = summary.seconds;
        transfer = summary.transfer.join(',');
      }
      const written = await stores.size(to, destinationKey);
      if (written !== size) throw new Error(`${what} wrote ${written} bytes, expected ${size}`);
      // Content is checked on the first round of each tool and direction; later rounds check size.
      const checkContent = round === 0;
      if (checkContent && (await stores.sha256(to, destinationKey)) !== sha256.get(sourceKey)) {
        throw new Error(`${what}: the copy's SHA-256 differs from the source's`);
      }
      await stores.delete(to, destinationKey);
      const sample: CopyRun = {
        kind: 'copy',
        tool,
        direction,
        round,
        object,
        size,
        seconds: run.seconds,
        mibPerSecond: size / MiB / run.seconds,
        ...(selfSeconds !== undefined && { selfSeconds }),
        ...(transfer !== undefined && { transfer }),
        maxRssBytes: run.maxRssBytes,
        cpuSeconds: run.userSeconds + run.systemSeconds,
        cpu,
        verified: checkContent ? 'size+sha256' : 'size',
        ...(run.stderr.trim() !== '' && { stderr: run.stderr.trim() }),
      };
      log(
        `  ${`${tool}${transfer ? ` (${transfer})` : ''}`.padEnd(16)} ${formatBytes(size).padStart(10)} ${sample.seconds.toFixed(2).padStart(7)} s ${sample.mibPerSecond.toFixed(1).padStart(7)} MiB/s  RSS ${(sample.maxRssBytes / 1e6).toFixed(0)} MB  ${describeCpu(sample.cpuSeconds, cpu)}${sample.stderr ? `  stderr: ${tail(sample.stderr, 2)}` : ''}`,
      );
      return sample;
    };

    const limitPass = async (
      pass: 'read' | 'write',
      direction: Direction,
      round: number,
    ): Promise<LimitRun> => {
      const side =
        pass === 'read' ? DIRECTIONS[direction].source : DIRECTIONS[direction].destination;
      const key = pass === 'read' ? BIG_KEY : `limit/${round}-${side}.bin`;
      const run = await runTimed(
        process.execPath,
        [
          '--import',
          TSX,
          LIMIT_SCRIPT,
          pass,
          side,
          CONTAINER,
          key,
          String(options.size),
          String(options.partSize),
          String(options.concurrency),
        ],
        { ...s3azEnv, BENCH_METER: JSON.stringify(stack.processes) },
      );
      const what = `${pass}-only pass on ${side} (round ${round + 1})`;
      if (run.code !== 0) throw new Error(`${what} failed: ${tail(run.stderr)}`);
      const { seconds, cpuSeconds, cpu } = JSON.parse(run.stdout) as {
        seconds: number;
        cpuSeconds: number;
        cpu: CpuUsage;
      };
      if (pass === 'write') {
        const written = await stores.size(side, key);
        if (written !== options.size)
          throw new Error(`${what} wrote ${written} bytes, expected ${options.size}`);
        await stores.delete(side, key);
      }
      const sample: LimitRun = {
        kind: 'limit',
        pass,
        side,
        direction,
        round,
        size: options.size,
        seconds,
        wallSeconds: run.seconds,
        mibPerSecond: options.size / MiB / seconds,
        cpuSeconds,
        cpu,
      };
      log(
        `  ${`${pass}-only ${side}`.padEnd(16)} ${formatBytes(options.size).padStart(10)} ${seconds.toFixed(2).padStart(7)} s ${sample.mibPerSecond.toFixed(1).padStart(7)} MiB/s  ${describeCpu(cpuSeconds, cpu)}`,
      );
      return sample;
    };

    type Step = Tool | 'read' | 'write';
    const steps: Step[] = [...tools, 'read', 'write'];
    for (let round = 0; round < options.runs; round++) {
      for (const direction of Object.keys(DIRECTIONS) as Direction[]) {
        log(`round ${round + 1} of ${options.runs}, ${DIRECTIONS[direction].label}`);
        for (const step of rotate(steps, round)) {
          result.runs.push(
            step === 'read' || step === 'write'
              ? await limitPass(step, direction, round)
              : await copy(step, direction, round, 'main'),
          );
        }
        result.runs.push(await copy('s3az', direction, round, 'small'));
      }
    }

    printThroughputReport(result, options.json);
    results.push(result);
  }
  if (all.profile) {
    // The emulators write their profiles as they exit.
    await stack.emulators.stop();
    log(
      `CPU profiles (${all.profile}; the emulators' cover every run, start-up included; rclone's are pprof files for \`go tool pprof\`):\n${formatProfiles(summarizeProfiles(all.profile))}`,
    );
  }
}

function describeCpu(clientSeconds: number, cpu: CpuUsage): string {
  const parts = Object.entries(cpu.processes).map(
    ([name, seconds]) => `${name} ${seconds.toFixed(1)}`,
  );
  const other =
    cpu.machineSeconds - clientSeconds - Object.values(cpu.processes).reduce((a, b) => a + b, 0);
  return `CPU s: client ${clientSeconds.toFixed(1)}, ${parts.join(', ')}, other ${Math.max(0, other).toFixed(1)}; machine ${(cpu.machineBusy * 100).toFixed(0)}% busy`;
}
