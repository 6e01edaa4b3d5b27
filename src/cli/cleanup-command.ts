import { CloudFormationClient, DescribeStackResourceCommand } from '@aws-sdk/client-cloudformation';
import type { STSClient } from '@aws-sdk/client-sts';
import type { Command } from 'commander';
import { assumedRoleCredentials } from '../auth/aws-role.ts';
import { blobServiceFor } from '../auth/azure-service.ts';
import { type SecretSource, SecretsManagerSource } from '../auth/secrets.ts';
import { loadConfig } from '../config/load.ts';
import type { ReplicationConfig, ReplicationRule } from '../config/schema.ts';
import { UsageError } from '../errors.ts';
import { REPLICATOR_ACCESS_KEY_PREFIX } from '../local/emulators.ts';
import {
  type CleanupClients,
  type CleanupCounts,
  type CleanupItem,
  cleanup,
  localInitiators,
  namedInitiators,
  type OwnInitiator,
  stackInitiators,
} from '../ops/cleanup.ts';
import { parseDuration } from '../ops/redrive.ts';
import { type OpsTarget, resolveTarget } from '../ops/target.ts';
import { AzureBlobObjectStore } from '../stores/azure-blob.ts';
import { awsClientSettings, type Environment, makeS3Client } from '../stores/clients.ts';
import { targetOptions } from './ops-commands.ts';

interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env?: Record<string, string | undefined>;
}

// A copy goes on from its staged parts for up to 600 continuations (about 6 days, see
// MAX_CONTINUATIONS): what is younger than a week may still be in use.
const DEFAULT_OLDER_THAN = '7d';
/** The session name `s3az cleanup` assumes a rule's roleArn with (its own, not the stack's). */
const CLEANUP_SESSION_NAME = 's3az-cleanup';
/** serverless.yml's logical id of the functions' role. */
const FUNCTIONS_ROLE_LOGICAL_ID = 'IamRoleLambdaExecution';

/** The name of the stack's functions' role, or `undefined` when CloudFormation does not say. */
async function functionsRoleName(stackName: string, env: Environment): Promise<string | undefined> {
  try {
    const out = await new CloudFormationClient(awsClientSettings(env, 'CLOUDFORMATION')).send(
      new DescribeStackResourceCommand({
        StackName: stackName,
        LogicalResourceId: FUNCTIONS_ROLE_LOGICAL_ID,
      }),
    );
    return out.StackResourceDetail?.PhysicalResourceId || undefined;
  } catch {
    return undefined;
  }
}

/** Lazily built AWS clients that only rules with a roleArn or a secret need. */
function lazyAws(env: Environment) {
  let sts: Promise<STSClient> | undefined;
  let secrets: Promise<SecretSource> | undefined;
  const stsClient = () => {
    sts ??= import('@aws-sdk/client-sts').then(
      ({ STSClient }) => new STSClient(awsClientSettings(env, 'STS')),
    );
    return sts;
  };
  const secretSource = () => {
    secrets ??= import('@aws-sdk/client-secrets-manager').then(
      ({ SecretsManagerClient }) =>
        new SecretsManagerSource(
          new SecretsManagerClient(awsClientSettings(env, 'SECRETS_MANAGER')),
        ),
    );
    return secrets;
  };
  const lazySecrets: SecretSource = {
    get: async (arn) => (await secretSource()).get(arn),
  };
  return { sts: stsClient, secrets: lazySecrets };
}

/** A rule's S3 client (its region and role) and Azure container (its credential). */
function clientsFor(env: Environment) {
  const aws = lazyAws(env);
  return async (rule: ReplicationRule): Promise<CleanupClients> => {
    const roleArn = rule.s3.roleArn;
    const s3 = makeS3Client(env, {
      ...(rule.s3.region !== undefined && { region: rule.s3.region }),
      ...(roleArn !== undefined && {
        credentials: assumedRoleCredentials(
          await aws.sts(),
          roleArn,
          CLEANUP_SESSION_NAME,
          rule.s3.externalId,
        ),
      }),
    });
    const { service } = await blobServiceFor(rule, { env, secrets: aws.secrets, sts: aws.sts });
    const container = service.getContainerClient(rule.azure.container);
    // The requests then carry the replicator's client request id, so that any event a delete
    // of an uncommitted blob raises is skipped by the webhook as the replicator's own.
    new AzureBlobObjectStore(container, { replicaWrites: true });
    return { s3, container };
  };
}

function itemLine(item: CleanupItem): string {
  const where =
    item.side === 's3'
      ? `s3://${item.container}/${item.key}`
      : `az://${item.container}/${item.key}`;
  const what =
    item.side === 's3'
      ? `upload ${item.uploadId ?? ''} started ${item.since}`
      : `${item.blocks ?? 0} uncommitted block${item.blocks === 1 ? '' : 's'}, blob dated ${item.since}`;
  return `${item.action.padEnd(12)}  ${where}  ${what}${item.error ? `: ${item.error}` : ''}`;
}

function countsLine(counts: CleanupCounts, dryRun: boolean): string {
  const where = counts.side === 's3' ? `s3://${counts.container}` : `az://${counts.container}`;
  const noun = counts.side === 's3' ? 'multipart upload' : 'uncommitted blob';
  const done =
    counts.side === 's3'
      ? dryRun
        ? 'would abort'
        : 'aborted'
      : dryRun
        ? 'would delete'
        : 'deleted';
  return `rule ${counts.rule} ${where}: ${counts.seen} ${noun}${counts.seen === 1 ? '' : 's'}; ${done} ${counts.cleaned}, another writer's ${counts.otherWriters}, too recent ${counts.recent}${counts.failed > 0 ? `, failed ${counts.failed}` : ''}`;
}

async function ownInitiatorOf(target: OpsTarget, io: Io): Promise<OwnInitiator> {
  if (target.local || !target.stackName) return localInitiators(REPLICATOR_ACCESS_KEY_PREFIX);
  const role = await functionsRoleName(target.stackName, target.env);
  if (role === undefined) {
    io.stderr.write(
      `s3az: ${target.name}: the functions' role is not known (no ${FUNCTIONS_ROLE_LOGICAL_ID}); only uploads of the stack's session of a rule's roleArn are recognised\n`,
    );
  }
  return stackInitiators({
    ...(role !== undefined && { functionsRoleName: role }),
    sessionName: target.stackName,
  });
}

/** `s3az cleanup`: the replicator's abandoned multipart uploads and uncommitted blocks. */
export async function runCleanup(
  options: Record<string, unknown>,
  io: Io = { stdout: process.stdout, stderr: process.stderr },
): Promise<void> {
  const olderThan = typeof options.olderThan === 'string' ? options.olderThan : DEFAULT_OLDER_THAN;
  const olderThanMs = parseDuration(olderThan, '--older-than');
  const target = await resolveTarget(targetOptions(options), io.env);
  let config: ReplicationConfig;
  if (target.local) {
    if (typeof options.config === 'string') {
      throw new UsageError(
        "--config: --local cleans up by the local mirror's own rules; leave out --config",
      );
    }
    config = target.local.config;
  } else if (typeof options.config === 'string') {
    config = await loadConfig(options.config);
  } else {
    throw new UsageError(
      `--config <file> is needed for ${target.name}: the replication configuration it was deployed with`,
    );
  }
  const rule = typeof options.rule === 'string' ? options.rule : undefined;
  if (rule !== undefined && !config.rules.some((each) => each.name === rule)) {
    throw new UsageError(
      `--rule: no rule "${rule}" (rules: ${config.rules.map((each) => each.name).join(', ')})`,
    );
  }
  const initiators = Array.isArray(options.initiator) ? (options.initiator as string[]) : [];
  for (const entry of initiators) {
    if (entry.length < 8 || entry === 'arn:aws:') {
      throw new UsageError(`--initiator: "${entry}" would match too many initiators`);
    }
  }
  const dryRun = options.dryRun === true;
  const result = await cleanup(
    config.rules,
    {
      clientsOf: clientsFor(target.local?.env ?? target.env),
      isOwnInitiator: namedInitiators(initiators, await ownInitiatorOf(target, io)),
    },
    { olderThanMs, dryRun, ...(rule !== undefined && { rule }) },
  );
  const failed = result.items.filter((item) => item.action === 'failed').length;
  if (options.json) {
    io.stdout.write(
      `${JSON.stringify({ target: target.name, dryRun, olderThan, olderThanMs, items: result.items, counts: result.counts })}\n`,
    );
  } else {
    const lines = result.items.map(itemLine);
    for (const counts of result.counts) lines.push(countsLine(counts, dryRun));
    lines.push(
      `${target.name}: staged writes of the replicator older than ${olderThan}: ${result.items.length - failed} ${dryRun ? 'to clean up (dry run: nothing changed)' : 'cleaned up'}${failed > 0 ? `, ${failed} failed` : ''}`,
    );
    io.stdout.write(`${lines.join('\n')}\n`);
  }
  if (failed > 0) throw new Error(`${failed} staged writes could not be cleaned up`);
}

/** Adds `cleanup` to the program. */
export function registerCleanupCommand(program: Command): void {
  program
    .command('cleanup')
    .description(
      "abort the replicator's own abandoned S3 multipart uploads and delete Azure blobs that hold only its own abandoned uncommitted blocks; never touches committed data or other writers' uploads",
    )
    .option('--stack <name>', 'the CloudFormation stack (default s3-azure-replicator-<stage>)')
    .option('--stage <stage>', 'the stage it was deployed with (default dev)')
    .option('--region <region>', "the stack's region (default AWS_REGION)")
    .option('--local [port]', 'a running `s3az local` (its S3/SQS port, default 4566)')
    .option('--config <file>', 'the replication configuration the stack was deployed with')
    .option('--rule <name>', 'only this rule')
    .option(
      '--older-than <duration>',
      `only staged writes older than this (90s, 15m, 2h, 3d; default ${DEFAULT_OLDER_THAN})`,
    )
    .option(
      '--initiator <id>',
      "also the uploads this Initiator ID started (one ending in / or : matches every ID it starts; repeatable), where S3 shows the replicator's own otherwise than as its role session's ARN",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option('--dry-run', 'list what would be cleaned up; change nothing')
    .option('--json', 'machine-readable output')
    .action((options) => runCleanup(options));
}
