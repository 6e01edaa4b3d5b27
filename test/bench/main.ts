import { runFunctions } from './functions.ts';
import { runLatency } from './latency.ts';
import { type BenchMode, runWithCleanup } from './lifecycle.ts';
import { runMemory } from './memory.ts';
import { runResume } from './resume.ts';
import { runSoak } from './soak.ts';
import { runThroughput } from './throughput.ts';

/**
 * `npm run bench -- [mode] [options]`: the benchmarks, by mode. The first argument names the
 * mode when it is not an option; `throughput` is the default.
 */
const MODES: Record<string, BenchMode> = {
  throughput: runThroughput,
  latency: runLatency,
  functions: runFunctions,
  memory: runMemory,
  resume: runResume,
  soak: runSoak,
  fuzz: async (args, cleanup) => (await import('./fuzz.ts')).runFuzz(args, cleanup),
  curves: async (args, cleanup) => (await import('./curves.ts')).runCurves(args, cleanup),
};

// The pinned AWS SDK supports Node 20; its notice about future releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const args = process.argv.slice(2);
const named = args[0] !== undefined && !args[0].startsWith('-') ? args[0] : undefined;
const mode = MODES[named ?? 'throughput'];
if (!mode) {
  process.stderr.write(
    `bench: unknown mode "${named}" (known: ${Object.keys(MODES).join(', ')})\n`,
  );
  process.exit(2);
}
await runWithCleanup((cleanup) => mode(named === undefined ? args : args.slice(1), cleanup));
