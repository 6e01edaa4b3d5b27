// Bundles the CLI into dist/s3az.mjs so `s3az` starts without compiling TypeScript at run time
// (about 0.3 s instead of 0.9 s). `npm ci` runs it (prepare). src/cli/s3az.js falls back to the sources when the bundle is
// missing or older than them.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile: 'dist/s3az.mjs',
  // Bundled CommonJS dependencies still call require().
  banner: {
    js: "import { createRequire as __s3azRequire } from 'node:module'; const require = __s3azRequire(import.meta.url);",
  },
  // The local stack starts its emulators from their own files, so it stays outside the bundle.
  external: ['fauxqs', 'azurite'],
  logLevel: 'warning',
});
