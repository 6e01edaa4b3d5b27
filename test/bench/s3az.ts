import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, stop } from 'esbuild';
import type { StoreEnvironment } from './stores.ts';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Bundles the current sources of the `s3az` CLI into `tempDir`, as `npm ci` does into
 * `dist/s3az.mjs` (same options as esbuild.config.mjs), and returns the bundle's path.
 *
 * The benchmark runs this snapshot rather than `src/cli/s3az.js`, because that entry falls back
 * to compiling the sources through tsx whenever the bundle is older than any source file, which
 * costs about 0.9 s of start-up and 45 MB of RSS per run: edits made while a benchmark runs
 * would otherwise change what it measures halfway through.
 */
export async function bundleS3az(tempDir: string): Promise<string> {
  const outfile = join(tempDir, 's3az.mjs');
  await build({
    entryPoints: [join(ROOT, 'src/cli/main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    banner: {
      js: "import { createRequire as __s3azRequire } from 'node:module'; const require = __s3azRequire(import.meta.url);",
    },
    external: ['fauxqs', 'azurite'],
    logLevel: 'warning',
  });
  // esbuild keeps a service process for later builds; there are none.
  await stop();
  return outfile;
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
