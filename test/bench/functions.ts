import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { startCpuMeter } from './cpu.ts';
import type { BenchMode } from './lifecycle.ts';
import { median } from './run.ts';
import { extractZip } from './zip.ts';

/**
 * `npm run bench -- functions`: each Lambda function's package and start-up, as deployed. It
 * builds the bundles (esbuild.config.mjs), packages the stack (`serverless package`, offline,
 * no credentials), and for each function prints the size of its zip and the median time its
 * handler module takes to load (module evaluation, no invocation) in a fresh Node.js process,
 * from the files of its zip alone, with the NODE_OPTIONS the stack sets
 * (--enable-source-maps), and without them (what the source maps cost). Budgets: a zip under
 * 1.5 MB, a load under 300 ms.
 */

const root = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

/** Each function's zip at most this many bytes. */
export const ZIP_BUDGET_BYTES = 1_500_000;
/** Each function's handler module loaded in at most this many milliseconds (median). */
export const LOAD_BUDGET_MS = 300;

interface Options {
  runs: number;
  config: string;
  build: boolean;
  /** A folder `serverless package` wrote before (`--package` or .serverless); else packaged now. */
  packageDir: string | undefined;
  json: boolean;
}

function parseOptions(args: readonly string[]): Options {
  const options: Options = {
    runs: 7,
    config: 'test/fixtures/deploy.replication.yml',
    build: true,
    packageDir: undefined,
    json: false,
  };
  for (let i = 0; i < args.length; i++) {
    const name = args[i];
    const value = args[i + 1];
    if (name === '--json') options.json = true;
    else if (name === '--no-build') options.build = false;
    else if (name === '--runs' && value) {
      options.runs = Number(value);
      i++;
    } else if (name === '--config' && value) {
      options.config = value;
      i++;
    } else if (name === '--package-dir' && value) {
      options.packageDir = resolve(value);
      i++;
    } else
      throw new Error(
        `functions: unknown option ${name} (--runs 7 --config file.yml --package-dir .serverless --no-build --json)`,
      );
  }
  if (!Number.isInteger(options.runs) || options.runs < 1) {
    throw new Error('functions: --runs must be a whole number of at least 1');
  }
  return options;
}

/** A function of the packaged stack. */
interface PackagedFunction {
  name: string;
  zip: string;
  /** The handler's module inside the zip, e.g. dist/handlers/copy.mjs. */
  module: string;
  /** NODE_OPTIONS the stack gives the function ('' when none). */
  nodeOptions: string;
}

/** The functions of the packaged template, with their zips and handler modules. */
async function packagedFunctions(dir: string): Promise<PackagedFunction[]> {
  const template = JSON.parse(
    await readFile(join(dir, 'cloudformation-template-update-stack.json'), 'utf8'),
  ) as { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };
  const functions: PackagedFunction[] = [];
  for (const resource of Object.values(template.Resources)) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const properties = resource.Properties as {
      Handler: string;
      Code: { S3Key: string };
      Environment?: { Variables?: Record<string, unknown> };
    };
    const module = properties.Handler.replace(/\.[^./]+$/, '');
    const nodeOptions = properties.Environment?.Variables?.NODE_OPTIONS;
    functions.push({
      name: basename(module),
      // One zip per function, or the service's one zip for all (without package.individually).
      zip: join(dir, basename(properties.Code.S3Key)),
      module: `${module}.mjs`,
      nodeOptions: typeof nodeOptions === 'string' ? nodeOptions : '',
    });
  }
  return functions;
}

/** What one function's package holds and how long its module takes to load. */
export interface FunctionMeasurement {
  name: string;
  zipBytes: number;
  files: number;
  /** Bytes of JavaScript in the zip (chunks loaded only on demand included). */
  codeBytes: number;
  /** Bytes of JavaScript the handler module loads before it answers (esbuild's metafile). */
  startBytes: number | undefined;
  nodeOptions: string;
  /** Milliseconds from import() to its end, one per run, with the stack's NODE_OPTIONS. */
  loadMs: number[];
  /** The same without NODE_OPTIONS (no source maps). */
  loadWithoutOptionsMs: number[];
  /** CPU milliseconds of the whole process (start-up included), per run with NODE_OPTIONS. */
  processCpuMs: number[];
}

const LOAD_SCRIPT = [
  'const started = performance.now();',
  'await import(process.env.S3AZ_BENCH_MODULE);',
  'const ms = performance.now() - started;',
  'const cpu = process.cpuUsage();',
  'process.stdout.write(JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000 }));',
].join('\n');

/** Loads a module in a fresh process, as Lambda's runtime does; its load time and CPU. */
async function loadOnce(
  dir: string,
  module: string,
  nodeOptions: string,
): Promise<{ ms: number; cpuMs: number }> {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', LOAD_SCRIPT], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_OPTIONS: nodeOptions,
      LAMBDA_TASK_ROOT: dir,
      S3AZ_BENCH_MODULE: pathToFileURL(join(dir, module)).href,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  });
  return JSON.parse(stdout) as { ms: number; cpuMs: number };
}

/** Bytes of the outputs a handler loads before it answers: its static imports, transitively. */
async function startBytesOf(name: string): Promise<number | undefined> {
  const file = join(root, 'dist', 'meta', `${name}.json`);
  if (!existsSync(file)) return undefined;
  const meta = JSON.parse(await readFile(file, 'utf8')) as {
    outputs: Record<string, { bytes: number; imports: { path: string; kind: string }[] }>;
  };
  const seen = new Set<string>();
  const pending = [`dist/handlers/${name}.mjs`];
  for (let output = pending.pop(); output !== undefined; output = pending.pop()) {
    const outputInfo = meta.outputs[output];
    if (seen.has(output) || !outputInfo) continue;
    seen.add(output);
    for (const imported of outputInfo.imports) {
      if (imported.kind === 'import-statement') pending.push(imported.path);
    }
  }
  let bytes = 0;
  for (const output of seen) bytes += meta.outputs[output]?.bytes ?? 0;
  return bytes;
}

const kb = (bytes: number) => `${(bytes / 1000).toFixed(0)} kB`;
const ms = (value: number) => `${value.toFixed(0)} ms`;

function table(headers: string[], rows: string[][]): string[] {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [
    line(headers),
    `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`,
    ...rows.map(line),
  ];
}

export const runFunctions: BenchMode = async (args, cleanup) => {
  const options = parseOptions(args);
  const say = (text: string) => {
    if (!options.json) process.stderr.write(`${text}\n`);
  };
  if (options.build) {
    say('building the bundles (esbuild.config.mjs)...');
    await run(process.execPath, ['esbuild.config.mjs'], { cwd: root });
  }
  let packageDir = options.packageDir;
  let packageSeconds: number | undefined;
  if (!packageDir) {
    const dir = mkdtempSync(join(tmpdir(), 's3az-bench-package-'));
    cleanup.addSync(() => rmSync(dir, { recursive: true, force: true }));
    say(`packaging (serverless package --param=config=${options.config})...`);
    const started = performance.now();
    await run(
      join(root, 'node_modules', '.bin', 'serverless'),
      ['package', '--stage', 'bench', `--param=config=${options.config}`, '--package', dir],
      { cwd: root, env: { ...process.env, SLS_TELEMETRY_DISABLED: '1' } },
    );
    packageSeconds = (performance.now() - started) / 1000;
    packageDir = dir;
  }
  const functions = await packagedFunctions(packageDir);
  if (functions.length === 0) throw new Error(`functions: no function in ${packageDir}`);

  const extracted = mkdtempSync(join(tmpdir(), 's3az-bench-functions-'));
  cleanup.addSync(() => rmSync(extracted, { recursive: true, force: true }));
  const results: FunctionMeasurement[] = [];
  for (const fn of functions) {
    const zip = await readFile(fn.zip);
    const dir = join(extracted, fn.name);
    const names = await extractZip(zip, dir);
    if (!names.includes(fn.module)) throw new Error(`${fn.zip} holds no ${fn.module}`);
    let codeBytes = 0;
    for (const name of names) {
      if (name.endsWith('.mjs')) codeBytes += (await stat(join(dir, name))).size;
    }
    results.push({
      name: fn.name,
      zipBytes: zip.length,
      files: names.length,
      codeBytes,
      startBytes: await startBytesOf(fn.name),
      nodeOptions: fn.nodeOptions,
      loadMs: [],
      loadWithoutOptionsMs: [],
      processCpuMs: [],
    });
  }

  say(`loading each handler module ${options.runs} times in fresh processes...`);
  const meter = startCpuMeter([]);
  const started = performance.now();
  let ownCpuMs = 0;
  // Round-robin, so that a disturbance of the machine spreads over all functions.
  for (let round = 0; round < options.runs; round++) {
    for (const [index, fn] of functions.entries()) {
      const result = results[index];
      if (!result) continue;
      const dir = join(extracted, fn.name);
      const deployed = await loadOnce(dir, fn.module, fn.nodeOptions);
      const bare = await loadOnce(dir, fn.module, '');
      result.loadMs.push(deployed.ms);
      result.processCpuMs.push(deployed.cpuMs);
      result.loadWithoutOptionsMs.push(bare.ms);
      ownCpuMs += deployed.cpuMs + bare.cpuMs;
    }
  }
  const usage = meter.stop();
  const wallSeconds = (performance.now() - started) / 1000;
  // Every core-second the machine spent on anything but the measured processes.
  const otherShare = Math.max(
    0,
    (usage.machineSeconds - ownCpuMs / 1000) / (wallSeconds * availableParallelism()),
  );

  const checks = results.map((result) => ({
    name: result.name,
    zipMet: result.zipBytes <= ZIP_BUDGET_BYTES,
    loadMet: median(result.loadMs) <= LOAD_BUDGET_MS,
  }));
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          node: process.version,
          runs: options.runs,
          packageSeconds,
          budgets: { zipBytes: ZIP_BUDGET_BYTES, loadMs: LOAD_BUDGET_MS },
          otherWorkShare: otherShare,
          functions: results.map((result) => ({
            ...result,
            loadMedianMs: median(result.loadMs),
            loadWithoutOptionsMedianMs: median(result.loadWithoutOptionsMs),
          })),
          checks,
        },
        null,
        2,
      )}\n`,
    );
    return;
  }
  const deployedOptions = results[0]?.nodeOptions || '(none)';
  const lines = [
    '',
    `Functions as packaged (${packageDir}${packageSeconds === undefined ? '' : `, packaged in ${packageSeconds.toFixed(1)} s`}); ` +
      `module load: median of ${options.runs} fresh ${process.version} processes, from each zip's files alone.`,
    '',
    ...table(
      [
        'function',
        'zip',
        'files',
        'code (loaded at start)',
        `load, NODE_OPTIONS=${deployedOptions}`,
        'load without',
        'budgets (zip 1.5 MB, load 300 ms)',
      ],
      results.map((result, index) => {
        const check = checks[index];
        const load = median(result.loadMs);
        return [
          result.name,
          kb(result.zipBytes),
          String(result.files),
          `${kb(result.codeBytes)} (${result.startBytes === undefined ? '?' : kb(result.startBytes)})`,
          `${ms(load)} (${Math.min(...result.loadMs).toFixed(0)}-${Math.max(...result.loadMs).toFixed(0)})`,
          ms(median(result.loadWithoutOptionsMs)),
          check?.zipMet && check.loadMet
            ? 'met'
            : `OVER: ${[!check?.zipMet && 'zip', !check?.loadMet && 'load'].filter(Boolean).join(', ')}`,
        ];
      }),
    ),
    '',
    `Other work on the machine during the loads: ${(otherShare * 100).toFixed(0)}% of its ${availableParallelism()} cores` +
      (otherShare > 0.1 ? ' - the times are inflated; run again on a quiet machine.' : '.'),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
};
