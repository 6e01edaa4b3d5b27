// Bundles, with `npm run build` (and `npm ci`, through prepare):
// - the CLI into dist/s3az.mjs (and the modules of its commands into dist/cli/), so `s3az` starts without compiling TypeScript at run time
//   (about 0.3 s instead of 0.9 s; src/cli/s3az.js falls back to the sources when the bundle
//   is missing or older than them);
// - each Lambda handler on its own into dist/handlers/<name>.mjs, with the code it loads only
//   on demand (dynamic import(): the stores' SDKs, STS, Secrets Manager, @azure/identity) in
//   dist/handlers/<name>/*.mjs; serverless.yml packages each function with its own files only.
//   dist/meta/<name>.json is esbuild's metafile of each (what went in, how large), for the
//   tests and `npm run bench -- functions`;
// - dist/serverless-vars.cjs, which serverless.yml reads for IAM, queue policy and timing.
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { build } from 'esbuild';

// Bundled CommonJS dependencies still call require().
const requireShim = {
  js: "import { createRequire as __s3azRequire } from 'node:module'; const require = __s3azRequire(import.meta.url);",
};

/** The Lambda functions: handlers/<name>.ts each, as serverless.yml names them. */
const FUNCTIONS = ['eventgrid', 'plan', 'copy', 'redrive', 'reconcile'];

/**
 * Modules a function never loads, left out of its bundle: the webhook and redrive build no
 * rule's stores, so neither the S3 nor the Azure SDK is packaged with them. Loading one anyway
 * fails with an error that says so (a named import of one fails the build).
 */
const LEFT_OUT = {
  eventgrid: ['src/runtime/rule-stores.ts'],
  redrive: ['src/runtime/rule-stores.ts'],
};

function leaveOut(name) {
  const paths = new Set((LEFT_OUT[name] ?? []).map((path) => resolve(path)));
  return {
    name: 'leave-out',
    setup(build) {
      build.onResolve({ filter: /\.ts$/ }, (args) => {
        const path = resolve(args.resolveDir, args.path);
        return paths.has(path) ? { path, namespace: 'left-out' } : undefined;
      });
      build.onLoad({ filter: /.*/, namespace: 'left-out' }, (args) => ({
        contents: `throw new Error(${JSON.stringify(
          `the ${name} function is packaged without ${relative('.', args.path)} (esbuild.config.mjs LEFT_OUT)`,
        )});`,
        loader: 'js',
      }));
    },
  };
}

async function buildHandler(name) {
  const result = await build({
    entryPoints: { [name]: `handlers/${name}.ts` },
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    outdir: 'dist/handlers',
    chunkNames: `${name}/[name]-[hash]`,
    outExtension: { '.js': '.mjs' },
    banner: requireShim,
    // The ESM builds of the AWS SDK's packages (`module`: dist-es; `main` is dist-cjs), which
    // esbuild can tree-shake, and which its packages with an exports map resolve to anyway:
    // one copy of each, only what is used.
    mainFields: ['module', 'main'],
    // Stack traces name the sources' files, lines and functions (NODE_OPTIONS=
    // --enable-source-maps in serverless.yml). The maps carry positions and names only: the
    // sources' text would make them five times larger, the copy function's zip over 2 MB and
    // its start 40 ms slower (`npm run bench -- functions`); the sources are in the repository.
    sourcemap: 'linked',
    sourcesContent: false,
    minify: true,
    metafile: true,
    plugins: [leaveOut(name)],
    logLevel: 'warning',
  });
  // Chunks of earlier builds (other hashes) would be packaged too. They are removed after the
  // build, not before: a build that runs at the same time (another test run) makes the same
  // files, and must not see them vanish.
  await removeStale(result, `dist/handlers/${name}`);
  await mkdir('dist/meta', { recursive: true });
  const meta = `dist/meta/${name}.json`;
  await writeFile(`${meta}.${process.pid}`, JSON.stringify(result.metafile));
  await rename(`${meta}.${process.pid}`, meta);
}

/**
 * The CLI: dist/s3az.mjs, and in dist/cli/ the modules each command loads only when it runs
 * (src/cli/main.ts imports them on demand), so that `s3az copy` parses neither the
 * configuration's nor the operations' dependencies. `outdir` is dist, or where the benchmark
 * wants a snapshot of the current sources.
 */
async function buildCli(outdir) {
  const result = await build({
    entryPoints: { s3az: 'src/cli/main.ts' },
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outdir,
    chunkNames: 'cli/[name]-[hash]',
    outExtension: { '.js': '.mjs' },
    banner: requireShim,
    // The local stack starts its emulators from their own files, so it stays outside the bundle.
    external: ['fauxqs', 'azurite'],
    // As for the handlers: the SDKs' ESM builds, tree-shaken, and minified, so that every
    // command starts with less to parse.
    mainFields: ['module', 'main'],
    minify: true,
    metafile: true,
    logLevel: 'warning',
  });
  await removeStale(result, join(outdir, 'cli'));
}

/** Chunks of earlier builds (other hashes), after the build: see buildHandler. */
async function removeStale(result, folder) {
  const made = new Set(Object.keys(result.metafile.outputs).map((path) => resolve(path)));
  for (const file of await readdir(folder)) {
    if (!made.has(resolve(folder, file))) await rm(join(folder, file), { force: true });
  }
}

// S3AZ_CLI_OUTDIR: build only the CLI, into that folder (the benchmark's snapshot).
if (process.env.S3AZ_CLI_OUTDIR) {
  await buildCli(process.env.S3AZ_CLI_OUTDIR);
  process.exit(0);
}

await Promise.all([
  buildCli('dist'),
  ...FUNCTIONS.map(buildHandler),
  build({
    entryPoints: ['src/deploy/serverless-vars.ts'],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile: 'dist/serverless-vars.cjs',
    // The framework calls the module's export itself.
    footer: { js: 'module.exports = module.exports.default;' },
    logLevel: 'warning',
  }),
]);
