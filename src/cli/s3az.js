#!/usr/bin/env node
// Entry point for the `s3az` command. Runs the bundle that `npm ci` builds (dist/s3az.mjs,
// fast to start); when it is missing or older than the sources, runs the sources through tsx.
import { readdirSync, statSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

// The AWS SDK warns on every run under Node 20 about its future Node 22 requirement; the
// project pins SDK versions that support Node 20, so the warning only adds noise to output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const bundle = new URL('../../dist/s3az.mjs', import.meta.url);

function newestSource(folder) {
  let newest = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = `${folder}/${entry.name}`;
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

function bundleIsFresh() {
  try {
    // The bundle holds src/ and the handler modules (which `s3az local` runs).
    const built = statSync(bundle).mtimeMs;
    return ['..', '../../handlers'].every(
      (folder) => built >= newestSource(fileURLToPath(new URL(folder, import.meta.url))),
    );
  } catch {
    return false;
  }
}

// Node 22.1 and later keep V8's compiled code of the bundle between runs (on Node 20 there is no
// such cache): every command then starts without compiling its modules again.
module.enableCompileCache?.();

if (bundleIsFresh()) {
  await import(bundle.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./main.ts');
}
