import { Command, CommanderError } from 'commander';
import { ReplicatorError, UsageError } from '../errors.ts';
import { DEFAULT_CONCURRENCY, DEFAULT_MEMORY } from './copy-defaults.ts';
import { untilInterrupted } from './interrupt.ts';

type Registration = () => Promise<(program: Command) => void>;

/**
 * The commands other modules declare, by name. Only the command being run is loaded (each
 * module brings its SDK clients with it, and `s3az copy` needs none of CloudFormation, SQS,
 * Secrets Manager, YAML or the configuration's schema): parsing and initialising those cost
 * every copy about 0.25 s of start-up. `s3az --help` and an unknown command load them all.
 */
const ops: Registration = async () => (await import('./ops-commands.ts')).registerOpsCommands;
const REGISTRATIONS: Record<string, Registration> = {
  dlq: ops,
  redrive: ops,
  status: ops,
  setup: async () => (await import('./setup-command.ts')).registerSetupCommands,
  reconcile: async () => (await import('./reconcile-command.ts')).registerReconcileCommand,
  cleanup: async () => (await import('./cleanup-command.ts')).registerCleanupCommand,
};
const BUILT_IN = new Set(['copy', 'local']);

/** Exit codes: 0 done, 1 failed, 2 bad usage. */
function fail(error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`s3az: ${message.split('\n')[0]}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
}

const program = new Command('s3az')
  .description('Two-way, event-driven mirror between Amazon S3 and Azure Blob Storage')
  .exitOverride()
  // Commander's own errors ("error: missing required argument ...") in the one-line form.
  .configureOutput({
    outputError: (text, write) =>
      write(`s3az: ${(text.split('\n')[0] ?? text).replace(/^error: /, '')}\n`),
  });

program
  .command('copy')
  .description(
    'copy one object, or every object under a prefix (source ending in "/"), between S3 and Azure',
  )
  .argument(
    '<source>',
    's3://bucket/key, az://container/key or https://<account>.blob.core.windows.net/<container>/<key>',
  )
  .argument('<destination>', 'same forms; a destination ending in "/" is a prefix')
  .option('--part-size <size>', 'part/block size, bytes or with a unit (8MiB, 64MB)', '8MiB')
  .option('--concurrency <n>', 'ranges in flight at once', String(DEFAULT_CONCURRENCY))
  .option(
    '--memory <size>',
    'most bytes a copy holds at once; part size and concurrency are fitted to it',
    DEFAULT_MEMORY,
  )
  .option('--stream', 'stream bytes through this process even where Azure could pull from S3')
  .option('--json', 'print a JSON summary on stdout')
  .action(async (source: string, destination: string, options) => {
    await untilInterrupted('nothing was committed for the object in progress', (signal) =>
      import('./copy-command.ts').then(({ runCopyCommand }) =>
        runCopyCommand(source, destination, options, {
          stdout: process.stdout,
          stderr: process.stderr,
          signal,
        }),
      ),
    );
  });

program
  .command('local')
  .description(
    'run the whole replicator on this machine: S3 + SQS (fauxqs) and Azure Blob (Azurite) with their shims, the webhook, the queues and the handlers',
  )
  .option('--s3-port <port>', 'S3 and SQS port', '4566')
  .option('--azure-port <port>', 'Azure Blob port', '10000')
  .option('--webhook-port <port>', 'Event Grid webhook port (0: any free one)', '0')
  .option('--bucket <name>', 'bucket of the default rule', 'replicated')
  .option('--container <name>', 'container of the default rule', 'replicated')
  .option('--config <file>', 'a replication configuration instead of the default two-way rule')
  .option('--data <dir>', 'keep Azure Blob data in this folder instead of in memory')
  .option(
    '--faults <spec>',
    "inject faults into the replicator's requests to both stores: 5%, or rate=5%,seed=1,kinds=503+500+throttle+reset+truncate+latency",
  )
  .option('--json', 'machine-readable lines: one JSON object per change')
  .action(async (options) => {
    const { runLocalCommand } = await import('./local-command.ts');
    await runLocalCommand(options);
  });

const named = process.argv[2];
const needed =
  named !== undefined && BUILT_IN.has(named)
    ? []
    : named !== undefined && Object.hasOwn(REGISTRATIONS, named)
      ? [REGISTRATIONS[named] as Registration]
      : [...new Set(Object.values(REGISTRATIONS))];
for (const register of await Promise.all(needed.map((load) => load()))) register(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    if (error.exitCode === 0) process.exit(0);
    process.exit(2);
  }
  if (error instanceof ReplicatorError) fail(error);
  fail(error);
}
