import type { QueueConfiguration } from '@aws-sdk/client-s3';
import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import type { ReplicationConfig } from '../config/schema.ts';
import { UsageError } from '../errors.ts';
import { type BucketPlan, setupS3 } from '../ops/setup-s3.ts';
import { eventsQueueArn, LOCAL_NOTIFICATION_ID_PREFIX, resolveTarget } from '../ops/target.ts';
import { makeS3Client } from '../stores/clients.ts';
import { targetOptions } from './ops-commands.ts';
import { registerSetupAzureCommand } from './setup-azure-command.ts';

interface Io {
  stdout: NodeJS.WritableStream;
  env?: Record<string, string | undefined>;
}

function describeConfiguration(item: QueueConfiguration): string {
  const prefix =
    item.Filter?.Key?.FilterRules?.find((rule) => rule.Name?.toLowerCase() === 'prefix')?.Value ??
    '';
  return `${item.Id ?? '(no id)'}: ${(item.Events ?? []).join(', ')}${prefix ? ` under "${prefix}"` : ' (every key)'}`;
}

function planText(plan: BucketPlan, dryRun: boolean, remove: boolean): string[] {
  const verb = dryRun ? 'would' : '';
  if (!plan.changes) return [`s3://${plan.bucket}: already as it should be`];
  const lines = [`s3://${plan.bucket}: ${plan.kept} other configuration(s) kept as they are`];
  for (const item of plan.removed)
    lines.push(`  ${verb ? 'would remove' : 'removed'} ${describeConfiguration(item)}`);
  if (!remove) {
    for (const item of plan.added)
      lines.push(`  ${verb ? 'would add' : 'added'} ${describeConfiguration(item)}`);
  }
  return lines;
}

/** `s3az setup s3`: the bucket notifications each rule needs, merged into what is there. */
export async function runSetupS3(
  options: Record<string, unknown>,
  io: Io = { stdout: process.stdout },
) {
  const target = await resolveTarget(targetOptions(options), io.env);
  let config: ReplicationConfig;
  if (typeof options.config === 'string') config = await loadConfig(options.config);
  else if (target.local) config = target.local.config;
  else
    throw new UsageError(
      '--config: the replication configuration the stack was deployed with is needed',
    );
  const storeEnv = target.local?.env ?? { ...(io.env ?? process.env) };
  const plans = await setupS3({
    rules: config.rules,
    queueArn: await eventsQueueArn(target),
    idPrefix: target.stackName ? `s3az-${target.stackName}-` : LOCAL_NOTIFICATION_ID_PREFIX,
    clientFor: (rule) =>
      makeS3Client(storeEnv, { ...(rule.s3.region !== undefined && { region: rule.s3.region }) }),
    dryRun: options.dryRun === true,
    remove: options.remove === true,
  });
  if (options.json) {
    io.stdout.write(
      `${JSON.stringify({ target: target.name, dryRun: options.dryRun === true, buckets: plans })}\n`,
    );
    return;
  }
  const lines = plans.flatMap((plan) =>
    planText(plan, options.dryRun === true, options.remove === true),
  );
  if (plans.length === 0) lines.push('no rule needs S3 notifications');
  if (options.dryRun) lines.push('(dry run: nothing changed)');
  io.stdout.write(`${lines.join('\n')}\n`);
}

/** Adds `setup s3` to the program. */
export function registerSetupCommands(program: Command): void {
  const setup = program.command('setup').description('wire the clouds to a deployed stack');
  setup
    .command('s3')
    .description(
      "add each rule's bucket notification (ObjectCreated:*, and ObjectRemoved:* when deletes are mirrored, by prefix) to the stack's events queue, merged with the bucket's own configuration",
    )
    .option('--stack <name>', 'the CloudFormation stack (default s3-azure-replicator-<stage>)')
    .option('--stage <stage>', 'the stage it was deployed with (default dev)')
    .option('--region <region>', "the stack's region (default AWS_REGION)")
    .option('--local [port]', 'a running `s3az local` (its S3/SQS port, default 4566)')
    .option('--config <file>', 'the replication configuration the stack was deployed with')
    .option('--dry-run', 'print the change; change nothing')
    .option('--remove', 'take away exactly what setup added')
    .option('--json', 'machine-readable output')
    .action((options) => runSetupS3(options));
  registerSetupAzureCommand(setup);
}
