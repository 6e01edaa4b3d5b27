import { isAbsolute, resolve } from 'node:path';
import { loadConfig } from '../config/load.ts';
import type { ReplicationConfig } from '../config/schema.ts';
import * as timing from '../queue/timing.ts';

type Statement = Record<string, unknown>;

const queueArns = [
  'EventsQueue',
  'EventsDeadLetterQueue',
  'TasksQueue',
  'TasksDeadLetterQueue',
].map((name) => ({ 'Fn::GetAtt': [name, 'Arn'] }));

/**
 * Least-privilege IAM statements for the functions, generated from the rules: object actions
 * only under each rule's bucket and prefix (or `sts:AssumeRole` on the rule's role, which then
 * holds them), the KMS keys the rules name, the service's own queues, and the secrets the
 * configuration references. (SQS receive/delete for the event sources is added by the
 * framework itself.)
 */
export function iamStatements(config: ReplicationConfig): Statement[] {
  const statements: Statement[] = [];
  const objectArns: string[] = [];
  const buckets = new Map<string, Set<string>>();
  const roles = new Set<string>();
  const keys = new Set<string>();
  const secrets = new Set<string>();
  let federated = false;
  for (const rule of config.rules) {
    if (rule.s3.roleArn) roles.add(rule.s3.roleArn);
    else {
      objectArns.push(`arn:aws:s3:::${rule.s3.bucket}/${rule.s3.prefix}*`);
      const prefixes = buckets.get(rule.s3.bucket) ?? new Set<string>();
      prefixes.add(`${rule.s3.prefix}*`);
      buckets.set(rule.s3.bucket, prefixes);
    }
    if (rule.s3.kmsKeyId?.startsWith('arn:')) keys.add(rule.s3.kmsKeyId);
    const credential = rule.azure.credential;
    if (credential && 'secretArn' in credential) secrets.add(credential.secretArn);
    if (credential && 'workloadIdentity' in credential) federated = true;
  }
  const auth = config.eventGrid?.auth;
  if (auth?.mode === 'shared-secret' && 'secretArn' in auth) secrets.add(auth.secretArn);

  if (objectArns.length > 0) {
    statements.push({
      Effect: 'Allow',
      Action: [
        's3:GetObject',
        's3:GetObjectVersion',
        's3:PutObject',
        's3:DeleteObject',
        's3:AbortMultipartUpload',
        's3:ListMultipartUploadParts',
      ],
      Resource: objectArns,
    });
    for (const [bucket, prefixes] of buckets) {
      statements.push({
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: [`arn:aws:s3:::${bucket}`],
        Condition: { StringLike: { 's3:prefix': [...prefixes, ''] } },
      });
      statements.push({
        Effect: 'Allow',
        Action: ['s3:ListBucketMultipartUploads'],
        Resource: [`arn:aws:s3:::${bucket}`],
      });
    }
  }
  if (roles.size > 0)
    statements.push({ Effect: 'Allow', Action: ['sts:AssumeRole'], Resource: [...roles] });
  if (keys.size > 0) {
    statements.push({
      Effect: 'Allow',
      Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
      Resource: [...keys],
    });
  }
  if (secrets.size > 0) {
    statements.push({
      Effect: 'Allow',
      Action: ['secretsmanager:GetSecretValue'],
      Resource: [...secrets],
    });
  }
  if (federated) {
    // AWS outbound identity federation: the token Azure exchanges for its own.
    statements.push({ Effect: 'Allow', Action: ['sts:GetWebIdentityToken'], Resource: ['*'] });
  }
  statements.push({
    Effect: 'Allow',
    Action: ['sqs:SendMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes'],
    Resource: queueArns,
  });
  return statements;
}

/** The events queue's policy: only S3, and only for the configured buckets, may send to it. */
export function eventsQueuePolicy(config: ReplicationConfig): Statement {
  const buckets = [...new Set(config.rules.map((rule) => rule.s3.bucket))];
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'S3EventNotifications',
        Effect: 'Allow',
        Principal: { Service: 's3.amazonaws.com' },
        Action: 'sqs:SendMessage',
        Resource: { 'Fn::GetAtt': ['EventsQueue', 'Arn'] },
        Condition: {
          ArnLike: { 'aws:SourceArn': buckets.map((bucket) => `arn:aws:s3:::${bucket}`) },
        },
      },
    ],
  };
}

/** The pipeline's timing as serverless.yml reads it (`${self:custom.generated.timing.*}`). */
export function timingVariables(): Record<string, number> {
  return {
    copyTimeout: timing.COPY_TIMEOUT_SECONDS,
    planTimeout: timing.PLAN_TIMEOUT_SECONDS,
    webhookTimeout: timing.WEBHOOK_TIMEOUT_SECONDS,
    tasksVisibilityTimeout: timing.TASKS_VISIBILITY_TIMEOUT_SECONDS,
    eventsVisibilityTimeout: timing.EVENTS_VISIBILITY_TIMEOUT_SECONDS,
    maxReceives: timing.MAX_RECEIVES,
    copyBatchSize: timing.COPY_BATCH_SIZE,
    planBatchSize: timing.PLAN_BATCH_SIZE,
    deadLetterRetention: timing.DEAD_LETTER_RETENTION_SECONDS,
  };
}

interface ResolverArguments {
  resolveConfigurationProperty(path: string[]): Promise<unknown>;
}

/**
 * What serverless.yml reads with `${file(./dist/serverless-vars.cjs):…}`: the validated
 * configuration's IAM statements and queue policy, and the pipeline's timing. A configuration
 * that does not validate stops the deploy with the error naming the rule and field.
 */
export default async function serverlessVariables({
  resolveConfigurationProperty,
}: ResolverArguments) {
  const file = String(
    (await resolveConfigurationProperty(['custom', 'configFile'])) ?? 'replication.yml',
  );
  const config = await loadConfig(isAbsolute(file) ? file : resolve(process.cwd(), file));
  return {
    iamStatements: iamStatements(config),
    eventsQueuePolicy: eventsQueuePolicy(config),
    timing: timingVariables(),
  };
}
