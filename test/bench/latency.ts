import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { formatBytes } from '../../src/core/range-plan.ts';
import { findChildren, startCpuMeter } from './cpu.ts';
import type { BenchMode } from './lifecycle.ts';
import {
  formatProfiles,
  monotonicMicros,
  type ProfileSummary,
  summarizeProfiles,
} from './profile.ts';
import { RCLONE_MISSING, rcloneEnvironment, rcloneVersion } from './rclone.ts';
import { hasGnuTime, runTimed } from './run.ts';
import { EMULATOR_PROCESSES } from './stack.ts';

/**
 * `npm run bench -- latency`: replication latency on the local mirror (the same handlers and
 * queues as in Lambda, on the emulators), from the moment a write is acknowledged to the
 * moment the replica's commit is acknowledged (from then on it is readable), at steady rates,
 * both directions; then 2,000 small files mirrored, against `rclone copy` of the same files
 * between the same emulators.
 */

interface Options {
  rates: number[];
  seconds: number;
  files: number;
  json: boolean;
  /** Where to write CPU profiles of the mirror and the emulators (`--profile <dir>`). */
  profile?: string;
}

function parseOptions(args: readonly string[]): Options {
  const options: Options = { rates: [5, 10, 20, 40, 80], seconds: 10, files: 2000, json: false };
  for (let i = 0; i < args.length; i++) {
    const name = args[i];
    const value = args[i + 1];
    if (name === '--json') options.json = true;
    else if (name === '--rates' && value) {
      options.rates = value.split(',').map(Number);
      i++;
    } else if (name === '--seconds' && value) {
      options.seconds = Number(value);
      i++;
    } else if (name === '--files' && value) {
      options.files = Number(value);
      i++;
    } else if (name === '--profile' && value) {
      options.profile = resolve(value);
      i++;
    } else
      throw new Error(
        `latency: unknown option ${name} (--rates 5,10,20 --seconds 10 --files 2000 --json --profile <dir>)`,
      );
  }
  if (options.rates.some((rate) => !(rate > 0)) || !(options.seconds > 0) || !(options.files > 0)) {
    throw new Error('latency: rates, seconds and files must be positive numbers');
  }
  return options;
}

interface Series {
  name: string;
  rate: number;
  sizes: string;
  objects: number;
  p50: number;
  /** Median of write acknowledged -> notification sent, and notification -> replica committed. */
  notifyP50: number;
  pipelineP50: number;
  p95: number;
  p99: number;
  max: number;
  objectsPerSecond: number;
  /** CPU milliseconds per object of each process, and how busy the machine was (0..1). */
  cpu?: { perObjectMs: Record<string, number>; machineBusy: number };
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;

/** What `s3az local --json` prints first. */
interface Ready {
  s3Endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  azureAccountUrl: string;
  azureConnectionString: string;
}

/**
 * `s3az local --json` in its own process, as a user runs it: the writers here do not share an
 * event loop (or a CPU) with the handlers they measure. Replicas are known from its output
 * lines, one per change, each with the commit time.
 */
async function startMirrorProcess(cleanup: Parameters<BenchMode>[1], profile?: string) {
  const bin = fileURLToPath(new URL('../../src/cli/s3az.js', import.meta.url));
  // A profiled mirror runs from the sources, so that the profile names files and functions
  // (the bundle is minified); the emulators profile themselves (S3AZ_CPU_PROFILE_DIR).
  const entry = profile
    ? [
        '--cpu-prof',
        `--cpu-prof-dir=${join(profile, 'mirror')}`,
        '--import',
        'tsx',
        fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url)),
      ]
    : [bin];
  const child = spawn(
    process.execPath,
    [...entry, 'local', '--json', '--s3-port', '0', '--azure-port', '0'],
    {
      env: {
        ...process.env,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        ...(profile && { S3AZ_CPU_PROFILE_DIR: join(profile, 'emulators') }),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const stop = () => {
    child.kill('SIGINT');
    return exited;
  };
  cleanup.add(stop);
  const lines = createInterface({ input: child.stdout });
  const listeners = new Set<(line: Record<string, unknown>) => void>();
  const ready = new Promise<Ready>((resolve, reject) => {
    child.once('exit', (code) =>
      reject(new Error(`s3az local exited (${code}) before it was ready`)),
    );
    lines.on('line', (text) => {
      let value: Record<string, unknown>;
      try {
        value = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return;
      }
      if (value.ready === true) resolve(value as unknown as Ready);
      else for (const listener of listeners) listener(value);
    });
  });
  return {
    ready: await ready,
    pid: child.pid ?? 0,
    onLine: (listener: (line: Record<string, unknown>) => void) => listeners.add(listener),
    stop,
  };
}

class Stage {
  readonly s3: S3Client;
  readonly container: ContainerClient;
  readonly commits = new Map<string, number>();
  /** Epoch ms of each replica's source event (from the notification), for the breakdown. */
  readonly eventTimes = new Map<string, number>();
  readonly waiters = new Map<string, () => void>();

  constructor(
    readonly endpoints: Ready,
    onLine: (listener: (line: Record<string, unknown>) => void) => void,
  ) {
    this.s3 = new S3Client({
      endpoint: endpoints.s3Endpoint,
      forcePathStyle: true,
      region: endpoints.region,
      credentials: {
        accessKeyId: endpoints.accessKeyId,
        secretAccessKey: endpoints.secretAccessKey,
      },
    });
    this.container = BlobServiceClient.fromConnectionString(
      endpoints.azureConnectionString,
    ).getContainerClient('replicated');
    onLine((line) => {
      if (typeof line.from !== 'string') return;
      const match = /^(s3|az):\/\/[^/]+\/(.*)$/.exec(line.from);
      if (!match) return;
      const id = `${match[1] === 's3' ? 's3' : 'azure'}:${match[2]}`;
      if (line.action !== 'copied') return;
      // The line's own time is the commit (same clock); receiving it adds only the pipe.
      const committed = Date.parse(String(line.time));
      this.commits.set(id, committed);
      const latency = Number(line.latencyMs);
      if (Number.isFinite(latency)) this.eventTimes.set(id, committed - latency);
      this.waiters.get(id)?.();
    });
  }

  /** Resolves when the replica of `id` is committed, or rejects after `deadlineMs`. */
  replicated(id: string, deadlineMs = 120_000): Promise<number> {
    const done = this.commits.get(id);
    if (done !== undefined) return Promise.resolve(done);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${id} was not replicated in time`)),
        deadlineMs,
      );
      this.waiters.set(id, () => {
        clearTimeout(timer);
        this.waiters.delete(id);
        resolve(this.commits.get(id) ?? Date.now());
      });
    });
  }

  async write(side: 's3' | 'azure', key: string, body: Buffer): Promise<void> {
    if (side === 's3') {
      await this.s3.send(new PutObjectCommand({ Bucket: 'replicated', Key: key, Body: body }));
    } else {
      await this.container.getBlockBlobClient(key).upload(body, body.length);
    }
  }
}

async function steady(
  stage: Stage,
  name: string,
  rate: number,
  seconds: number,
  sizes: number[],
): Promise<Series> {
  const count = Math.max(1, Math.round(rate * seconds));
  const payloads = sizes.map((size) => Buffer.alloc(size, 7));
  const latencies: number[] = [];
  const notify: number[] = [];
  const pipeline: number[] = [];
  const started = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const due = started + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const side = i % 2 === 0 ? 's3' : 'azure';
    const key = `latency/${name}/${i}`;
    const body = payloads[i % payloads.length] ?? Buffer.alloc(1);
    pending.push(
      (async () => {
        await stage.write(side, key, body);
        const acknowledged = Date.now();
        const committed = await stage.replicated(`${side}:${key}`);
        latencies.push(committed - acknowledged);
        const event = stage.eventTimes.get(`${side}:${key}`);
        if (event !== undefined) {
          notify.push(event - acknowledged);
          pipeline.push(committed - event);
        }
      })(),
    );
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - started) / 1000;
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    name,
    rate,
    sizes: sizes.map((size) => formatBytes(size)).join(', '),
    objects: count,
    p50: percentile(sorted, 50),
    notifyP50: percentile(
      [...notify].sort((a, b) => a - b),
      50,
    ),
    pipelineP50: percentile(
      [...pipeline].sort((a, b) => a - b),
      50,
    ),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
    objectsPerSecond: count / elapsed,
  };
}

async function smallFiles(stage: Stage, files: number, cleanup: Parameters<BenchMode>[1]) {
  const body = Buffer.alloc(1024, 1);
  const keys = Array.from({ length: files }, (_, i) => `small/${String(i).padStart(5, '0')}.txt`);
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < keys.length) {
        const key = keys[next++];
        if (key) await stage.write('s3', key, body);
      }
    }),
  );
  const written = Date.now();
  const mirrored = Math.max(
    ...(await Promise.all(keys.map((key) => stage.replicated(`s3:${key}`)))),
  );
  // The profiles' summary ends here: what follows is rclone's work.
  const mirrorDone = monotonicMicros();

  let rclone: { seconds: number; version: string } | { missing: string } = {
    missing: RCLONE_MISSING,
  };
  const version = rcloneVersion();
  if (version && hasGnuTime()) {
    // Into a container no rule covers, so the mirror does not copy rclone's writes back.
    const endpoints = stage.endpoints;
    await BlobServiceClient.fromConnectionString(endpoints.azureConnectionString)
      .getContainerClient('rclone-target')
      .createIfNotExists();
    const account = /AccountName=([^;]+)/.exec(endpoints.azureConnectionString)?.[1] ?? '';
    const accountKey = /AccountKey=([^;]+)/.exec(endpoints.azureConnectionString)?.[1] ?? '';
    const temp = mkdtempSync(join(tmpdir(), 's3az-latency-'));
    cleanup.addSync(() => rmSync(temp, { recursive: true, force: true }));
    const env = rcloneEnvironment(
      {
        ...endpoints,
        azureAccountName: account,
        azureAccountKey: accountKey,
        container: 'rclone-target',
      },
      temp,
    );
    const run = await runTimed(
      'rclone',
      ['copy', 's3:replicated/small', 'az:rclone-target/small'],
      env,
    );
    if (run.code !== 0) throw new Error(`rclone copy failed: ${run.stderr.slice(-500)}`);
    rclone = { seconds: run.seconds, version };
  }
  return {
    mirrorDone,
    files,
    writeSeconds: (written - started) / 1000,
    mirrorSeconds: (mirrored - started) / 1000,
    lagAfterLastWriteSeconds: (mirrored - written) / 1000,
    rclone,
  };
}

export const runLatency: BenchMode = async (args, cleanup) => {
  const options = parseOptions(args);
  if (options.profile) rmSync(options.profile, { recursive: true, force: true });
  const mirror = await startMirrorProcess(cleanup, options.profile);
  const stage = new Stage(mirror.ready, mirror.onLine);
  const say = (text: string) => {
    if (!options.json) process.stdout.write(`${text}\n`);
  };
  say('latency on the local mirror: write acknowledged -> replica committed, both directions');
  // CPU of every process of the mirror, and of the writers here, per object of each series.
  const emulators = findChildren(mirror.pid, EMULATOR_PROCESSES);
  const metered = async (run: () => Promise<Series>): Promise<Series> => {
    const meter = startCpuMeter([{ name: 'mirror', pid: mirror.pid }, ...emulators]);
    const writersBefore = process.cpuUsage();
    const result = await run();
    const usage = meter.stop();
    const writers = process.cpuUsage(writersBefore);
    const seconds: Record<string, number> = { ...usage.processes };
    // The mirror's process tree holds the emulators it started; its own share is the rest.
    for (const { name } of emulators) seconds.mirror = (seconds.mirror ?? 0) - (seconds[name] ?? 0);
    seconds.writers = (writers.user + writers.system) / 1e6;
    const perObjectMs = Object.fromEntries(
      Object.entries(seconds).map(([name, value]) => [name, (value * 1000) / result.objects]),
    );
    return { ...result, cpu: { perObjectMs, machineBusy: usage.machineBusy } };
  };
  const cpuLine = (result: Series) =>
    result.cpu
      ? `      CPU per object: ${Object.entries(result.cpu.perObjectMs)
          .map(([name, ms]) => `${name} ${ms.toFixed(1)} ms`)
          .join(', ')}; machine ${(result.cpu.machineBusy * 100).toFixed(0)}% busy`
      : '';
  const measuring = monotonicMicros();
  // A short warm-up: first requests pay for connections and JIT.
  await steady(stage, 'warmup', 10, 1, [1024]);
  const series: Series[] = [];
  for (const rate of options.rates) {
    const result = await metered(() =>
      steady(stage, `rate-${rate}`, rate, options.seconds, [
        1024,
        16 * 1024,
        256 * 1024,
        1024 * 1024,
      ]),
    );
    series.push(result);
    say(
      `  ${String(rate).padStart(3)} objects/s (1 KiB-1 MiB): p50 ${result.p50.toFixed(0)} ms  p95 ${result.p95.toFixed(0)} ms  p99 ${result.p99.toFixed(0)} ms  max ${result.max.toFixed(0)} ms  (${result.objects} objects, ${result.objectsPerSecond.toFixed(1)}/s; median notification ${result.notifyP50.toFixed(0)} ms + pipeline ${result.pipelineP50.toFixed(0)} ms)`,
    );
    say(cpuLine(result));
  }
  const large = await metered(() => steady(stage, 'large', 1, options.seconds, [8 * 1024 * 1024]));
  series.push(large);
  say(
    `    1 objects/s (8 MiB):         p50 ${large.p50.toFixed(0)} ms  p95 ${large.p95.toFixed(0)} ms  p99 ${large.p99.toFixed(0)} ms  max ${large.max.toFixed(0)} ms  (${large.objects} objects)`,
  );
  say(cpuLine(large));
  say(`${options.files} small files (1 KiB) written to S3 with 32 writers, mirrored to Azure:`);
  const small = await smallFiles(stage, options.files, cleanup);
  say(
    `  s3az: ${small.mirrorSeconds.toFixed(1)} s from the first write to the last replica (writes took ${small.writeSeconds.toFixed(1)} s; the last replica came ${small.lagAfterLastWriteSeconds.toFixed(1)} s after the last write)`,
  );
  if ('seconds' in small.rclone) {
    say(
      `  rclone copy of the same files (${small.rclone.version}, defaults): ${small.rclone.seconds.toFixed(1)} s after they were all written`,
    );
    say(`  ratio s3az / rclone: ${(small.mirrorSeconds / small.rclone.seconds).toFixed(2)}`);
  } else say(`  rclone: ${small.rclone.missing}`);
  let profiles: ProfileSummary[] | undefined;
  if (options.profile) {
    // The profiles are written as the processes exit.
    await mirror.stop();
    profiles = summarizeProfiles(options.profile, { from: measuring, to: small.mirrorDone });
    say(
      `CPU profiles (${options.profile}), from the first series to the last small file mirrored (rclone's run left out):\n${formatProfiles(profiles)}`,
    );
  }
  if (options.json) process.stdout.write(`${JSON.stringify({ series, small, profiles })}\n`);
};
