import { Command, CommanderError } from 'commander';
import { ReplicatorError, UsageError } from '../errors.ts';
import { registerCleanupCommand } from './cleanup-command.ts';
import { DEFAULT_CONCURRENCY, DEFAULT_MEMORY, runCopyCommand } from './copy-command.ts';
import { untilInterrupted } from './interrupt.ts';
import { runLocalCommand } from './local-command.ts';
import { registerOpsCommands } from './ops-commands.ts';
import { registerReconcileCommand } from './reconcile-command.ts';
import { registerSetupCommands } from './setup-command.ts';

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
      runCopyCommand(source, destination, options, {
        stdout: process.stdout,
        stderr: process.stderr,
        signal,
      }),
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
    await runLocalCommand(options);
  });

registerOpsCommands(program);
registerSetupCommands(program);
registerReconcileCommand(program);
registerCleanupCommand(program);

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
