import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { CopySummary } from '../../src/cli/copy-command.ts';
import type { Cleanup } from './lifecycle.ts';
import type { StoreEnvironment } from './stores.ts';

const execFileAsync = promisify(execFile);

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Bundles the current sources of the `s3az` CLI into `tempDir`, as `npm ci` does into
 * `dist/s3az.mjs` and `dist/cli/` (esbuild.config.mjs itself builds it), and returns the
 * entry's path.
 *
 * The benchmark runs this snapshot rather than `src/cli/s3az.js`, because that entry falls back
 * to compiling the sources through tsx whenever the bundle is older than any source file, which
 * costs about 0.9 s of start-up and 45 MB of RSS per run: edits made while a benchmark runs
 * would otherwise change what it measures halfway through.
 */
export async function bundleS3az(tempDir: string): Promise<string> {
  await execFileAsync(process.execPath, [join(ROOT, 'esbuild.config.mjs')], {
    cwd: ROOT,
    env: { ...process.env, S3AZ_CLI_OUTDIR: tempDir },
  });
  return join(tempDir, 's3az.mjs');
}

/**
 * The environment `s3az` runs with: the emulators' endpoints and keys, as a user would set
 * them, and nothing else from this machine.
 */
export function s3azEnvironment(stores: StoreEnvironment): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    // The bundle lives outside the repository; what it still require()s resolves from here.
    NODE_PATH: join(ROOT, 'node_modules'),
    // The pinned AWS SDK supports Node 20; src/cli/s3az.js silences its notice the same way.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    ...stores,
  };
}

/** The commit and the uncommitted source files the benchmark measured, for the record. */
export function sourceState(): { commit: string; uncommitted: string[] } {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'ignore'],
      }).toString();
    } catch {
      return '';
    }
  };
  return {
    commit: git('rev-parse', '--short', 'HEAD').trim(),
    // Porcelain lines are `XY path`: two status letters (either may be a space), a space.
    uncommitted: git('status', '--porcelain', '--', 'src')
      .split('\n')
      .filter((line) => line.length > 3)
      .map((line) => line.slice(3)),
  };
}

/** The summary `s3az copy --json` prints last; `what` names the run in the error otherwise. */
export function parseCopySummary(stdout: string, what: string): CopySummary {
  const line = stdout.trim().split('\n').at(-1) ?? '';
  try {
    const value = JSON.parse(line) as Partial<CopySummary>;
    if (
      typeof value.objects === 'number' &&
      typeof value.failed === 'number' &&
      typeof value.bytes === 'number' &&
      typeof value.seconds === 'number' &&
      typeof value.mibPerSecond === 'number' &&
      typeof value.maxRssBytes === 'number' &&
      Array.isArray(value.transfer)
    ) {
      return value as CopySummary;
    }
  } catch {
    // reported below
  }
  throw new Error(`${what}: unexpected --json output: ${JSON.stringify(stdout.slice(0, 300))}`);
}

/**
 * A temporary folder (removed by `cleanup`) holding a snapshot bundle of the CLI (see
 * {@link bundleS3az}), and the sources' state it was made from.
 */
export async function bundleSnapshot(
  cleanup: Cleanup,
  name: string,
  log: (line: string) => void,
): Promise<{ temp: string; bundle: string; source: ReturnType<typeof sourceState> }> {
  const temp = mkdtempSync(join(tmpdir(), `s3az-${name}-`));
  cleanup.addSync(() => rmSync(temp, { recursive: true, force: true }));
  log('bundling the s3az CLI from the current sources...');
  return { temp, bundle: await bundleS3az(temp), source: sourceState() };
}
