#!/usr/bin/env node
// Entry point for the `s3az` command: loads the TypeScript CLI through tsx's loader.
import { register } from 'tsx/esm/api';

// The AWS SDK warns on every run under Node 20 about its future Node 22 requirement; the
// project pins SDK versions that support Node 20, so the warning only adds noise to output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
register();
await import('../src/cli/main.ts');
