import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * `--profile <dir>` of the benchmarks: V8 CPU profiles (`--cpu-prof`) of every Node process of
 * a run (the copier or the mirror, the S3 emulator, Azurite, the Azure shim), summarised as
 * where each process's CPU time went. Profiles are matched to processes by the code they ran,
 * so that the emulators' children need not report their process ids.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  /** Microseconds of the monotonic clock (the same for every process of the machine). */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/**
 * A stretch of the monotonic clock, in microseconds (`monotonicMicros()`): samples outside it
 * are left out, so that a summary covers one tool's work.
 */
export interface ProfileWindow {
  from: number;
  to: number;
}

/** Now on the clock V8 stamps profiles with (CLOCK_MONOTONIC), in microseconds. */
export function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** What a sample's own frame was doing, in words a reader of the README knows. */
const CATEGORIES: Array<[string, (frame: ProfileNode['callFrame']) => boolean]> = [
  ['idle', (f) => f.functionName === '(idle)'],
  ['garbage collection', (f) => f.functionName === '(garbage collector)'],
  [
    'checksums (MD5, CRC)',
    (f) =>
      (f.url.includes('internal/crypto/hash') && f.functionName === 'update') ||
      f.functionName === 'crc32' ||
      f.url.startsWith('wasm://'),
  ],
  [
    'buffer copies',
    (f) =>
      f.url === 'node:buffer' ||
      f.url.includes('internal/buffer') ||
      f.functionName === 'writeBuffer' ||
      f.functionName === 'writeLatin1String' ||
      f.functionName === 'writeUtf8String',
  ],
  [
    'loading and compiling code',
    (f) =>
      f.url.includes('internal/modules') ||
      f.url.includes('internal/bootstrap') ||
      f.url.includes('tsx/dist') ||
      f.url.includes('cjs-module-lexer') ||
      f.functionName.startsWith('compile'),
  ],
  [
    'sockets and HTTP parsing',
    (f) =>
      /node:(_http_|net|internal\/stream_base|internal\/http|http$|https$|_tls)/.test(f.url) ||
      ['writev', 'writeBuffer', 'read', 'onStreamRead'].includes(f.functionName) ||
      f.url.includes('undici'),
  ],
  [
    'Node streams and events',
    (f) =>
      f.url.includes('internal/streams') ||
      f.url === 'node:events' ||
      f.url.includes('internal/process/task_queues') ||
      f.url.includes('internal/timers') ||
      f.functionName === 'runMicrotasks',
  ],
  ['AWS SDK', (f) => /@aws-sdk|@smithy|@aws-crypto|fast-xml-parser/.test(f.url)],
  ['Azure SDK', (f) => /@azure|@typespec/.test(f.url)],
  ['SQS and S3 emulator (fauxqs)', (f) => /fauxqs|fastify|light-my-request|@fastify/.test(f.url)],
  ['Azure emulator (Azurite)', (f) => /azurite|sequelize|loki|express/.test(f.url)],
  ['s3az (src/, handlers/, bundle)', (f) => /\/(src|handlers|dist)\//.test(f.url)],
];

/** Which process a profile came from, by the code it ran. */
function processOf(profile: CpuProfile): string {
  const urls = new Set(profile.nodes.map((node) => node.callFrame.url));
  const any = (pattern: RegExp) => [...urls].some((url) => pattern.test(url));
  if (any(/azurite/)) return 'azurite';
  if (any(/azure-shim-main/)) return 'azure shim';
  if (any(/s3-emulator-main/)) return 's3 emulator';
  if (any(/cli\/main\.ts|s3az\.mjs|dist\/cli\//)) return 's3az';
  // The loader thread each emulator runs TypeScript through (tsx), busy at start-up.
  return 'module loader threads';
}

export interface ProfileSummary {
  process: string;
  file: string;
  /** CPU seconds by category (idle excluded), largest first. */
  categories: Array<{ name: string; seconds: number }>;
  cpuSeconds: number;
  /** The functions that took the most CPU themselves. */
  top: Array<{ name: string; seconds: number }>;
}

/** Adds `amount` to `name`'s total. */
function add(totals: Map<string, number>, name: string, amount: number): void {
  totals.set(name, (totals.get(name) ?? 0) + amount);
}

/** Totals as a list, largest first, in seconds (`secondsPerUnit`: one unit of the totals). */
function largestFirst(
  totals: Map<string, number>,
  secondsPerUnit = 1,
): Array<{ name: string; seconds: number }> {
  return [...totals]
    .sort((a, b) => b[1] - a[1])
    .map(([name, amount]) => ({ name, seconds: amount * secondsPerUnit }));
}

/** Summarises one `.cpuprofile` file, or the part of it inside `window`. */
export function summarizeProfile(file: string, window?: ProfileWindow): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const microseconds = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    at += delta;
    if (window && (at < window.from || at > window.to)) return;
    microseconds.set(id, (microseconds.get(id) ?? 0) + delta);
  });
  const categories = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, time] of microseconds) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    const category = CATEGORIES.find(([, test]) => test(frame))?.[0] ?? 'other';
    add(categories, category, time);
    if (category === 'idle') continue;
    const where = frame.url
      .replace(/^.*node_modules\//, '')
      .replace(/^file:\/\/.*?\/(src|handlers|test|dist)\//, '$1/');
    const name = `${frame.functionName || '(anonymous)'} ${where}:${frame.lineNumber + 1}`;
    add(functions, name, time);
  }
  categories.delete('idle');
  return {
    process: processOf(profile),
    file,
    categories: largestFirst(categories, 1e-6),
    cpuSeconds: [...categories.values()].reduce((a, b) => a + b, 0) * 1e-6,
    top: largestFirst(functions, 1e-6).slice(0, 8),
  };
}

/** Summaries of every profile under `dir` (recursively), merged per process. */
export function summarizeProfiles(dir: string, window?: ProfileWindow): ProfileSummary[] {
  const files: string[] = [];
  const walk = (folder: string) => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.cpuprofile')) files.push(path);
    }
  };
  walk(dir);
  const merged = new Map<string, { categories: Map<string, number>; top: Map<string, number> }>();
  for (const file of files) {
    const summary = summarizeProfile(file, window);
    // A worker thread of the tsx loader profiles nothing but loading.
    if (summary.cpuSeconds < 0.05) continue;
    const into = merged.get(summary.process) ?? { categories: new Map(), top: new Map() };
    for (const { name, seconds } of summary.categories) add(into.categories, name, seconds);
    for (const { name, seconds } of summary.top) add(into.top, name, seconds);
    merged.set(summary.process, into);
  }
  return [...merged].map(([process, { categories, top }]) => ({
    process,
    file: dir,
    categories: largestFirst(categories),
    cpuSeconds: [...categories.values()].reduce((a, b) => a + b, 0),
    top: largestFirst(top).slice(0, 8),
  }));
}

/** The summaries as text: per process, its CPU seconds and the share of each category. */
export function formatProfiles(summaries: ProfileSummary[]): string {
  const lines: string[] = [];
  for (const summary of [...summaries].sort((a, b) => b.cpuSeconds - a.cpuSeconds)) {
    const shares = summary.categories
      .filter(({ seconds }) => seconds / summary.cpuSeconds >= 0.03)
      .map(({ name, seconds }) => `${name} ${((seconds / summary.cpuSeconds) * 100).toFixed(0)}%`);
    lines.push(
      `  ${summary.process}: ${summary.cpuSeconds.toFixed(2)} CPU-s: ${shares.join(', ')}`,
    );
    for (const { name, seconds } of summary.top.slice(0, 4)) {
      lines.push(`      ${seconds.toFixed(2)} s  ${name}`);
    }
  }
  return lines.join('\n');
}
