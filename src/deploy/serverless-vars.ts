import { isAbsolute, resolve } from 'node:path';
import { WEB_IDENTITY_TOKEN } from '../auth/web-identity.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { ReplicationConfig, ReplicationRule } from '../config/schema.ts';
import * as timing from '../queue/timing.ts';

type Statement = Record<string, unknown>;

/** A string as CloudFormation resolves it at deploy time: a literal, a `Ref` or a join. */
type DeployString = string | { Ref: string } | { 'Fn::Join': [string, DeployString[]] };

// The stack's own account and Region, resolved by CloudFormation, so that packaging needs no
// AWS credentials (the framework's `${aws:accountId}` would call STS).
const stackAccount: DeployString = { Ref: 'AWS::AccountId' };
const stackRegion: DeployString = { Ref: 'AWS::Region' };

/** The account in an ARN (`arn:partition:service:region:account:…`). */
function accountOf(arn: string): string | undefined {
  const account = arn.split(':')[4];
  return account ? account : undefined;
}

/** The account a rule's S3 requests are made from: its `roleArn`'s, else the stack's. */
function requesterAccount(rule: ReplicationRule): DeployString {
  return (rule.s3.roleArn && accountOf(rule.s3.roleArn)) || stackAccount;
}

/** The account that owns a rule's bucket: `bucketOwner`, else its `roleArn`'s, else the stack's. */
function bucketOwner(rule: ReplicationRule): DeployString {
  return rule.s3.bucketOwner ?? requesterAccount(rule);
}

interface KmsGrant {
  /** A key ARN, or a pattern of key ARNs when `alias` narrows it. */
  resource: DeployString;
  /** The alias name (`alias/…`) the key must carry. */
  alias?: string;
}

/**
 * What to grant for a KMS key named in the configuration: a key ARN as it is; a bare key id
 * as the key ARN in `where` (the Region and account the service resolves it in); an alias
 * name or alias ARN as every key of that account and Region that carries the alias.
 */
function kmsGrant(keyId: string, where: { region: DeployString; account: DeployString }): KmsGrant {
  // An IAM policy names a KMS key only by its key ARN, never by an alias or key id; an alias
  // is matched with kms:ResourceAliases, which holds "whether or how the KMS key is identified
  // in the request" (S3's later Decrypt names no alias, so kms:RequestAlias would not do).
  // https://docs.aws.amazon.com/kms/latest/developerguide/cmks-in-iam-policies.html
  // https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-resource-aliases
  const aliasArn = /^arn:([^:]+):kms:([^:]+):(\d{12}):(alias\/.+)$/.exec(keyId);
  if (aliasArn) {
    const [, partition = '', region = '', account = '', alias = ''] = aliasArn;
    return { resource: `arn:${partition}:kms:${region}:${account}:key/*`, alias };
  }
  if (keyId.startsWith('arn:')) return { resource: keyId };
  const keyArn = (id: string): DeployString => ({
    'Fn::Join': [
      '',
      ['arn:', { Ref: 'AWS::Partition' }, ':kms:', where.region, ':', where.account, `:key/${id}`],
    ],
  });
  if (keyId.startsWith('alias/')) return { resource: keyArn('*'), alias: keyId };
  return { resource: keyArn(keyId) };
}

/** Where S3 resolves a rule's key id or alias for its writes: the requester's account. */
function writeKeyWhere(rule: ReplicationRule) {
  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_ServerSideEncryptionByDefault.html
  return { region: rule.s3.region ?? stackRegion, account: requesterAccount(rule) };
}

/**
 * Where the keys of a bucket's existing objects live, when named by id or alias: the bucket
 * owner's account (its default encryption's key), in the bucket's Region.
 */
function readKeyWhere(rule: ReplicationRule) {
  return { region: rule.s3.region ?? stackRegion, account: bucketOwner(rule) };
}

/** A secret's key named by id or alias lives in the secret's own account and Region. */
function secretKeyWhere(secretArn: string) {
  const [, , , region, account] = secretArn.split(':');
  return { region: region || stackRegion, account: account || stackAccount };
}

/**
 * Refuses what may run locally but must not be deployed: `eventGrid.auth.mode: none` would
 * let anyone on the internet post events to the webhook.
 */
export function checkDeployable(config: ReplicationConfig): void {
  if (config.eventGrid?.auth.mode === 'none') {
    throw new ConfigError(
      'eventGrid.auth.mode: "none" accepts unauthenticated deliveries and is for local use only; a deployed webhook needs mode "entra", or "shared-secret" with a secretArn',
    );
  }
}

const WRITE_KEY_ACTIONS = ['kms:GenerateDataKey', 'kms:Decrypt'];

/**
 * KMS statements, merged where they can be: keys named by ARN share one statement per set of
 * actions; a key named by alias gets its own, conditioned on the alias; a secret's key is
 * usable only by Secrets Manager, for that secret.
 */
class KmsStatements {
  // Keyed by their JSON, as a resource may be a CloudFormation join.
  readonly #plain = new Map<string, { actions: string[]; resources: Map<string, DeployString> }>();
  readonly #conditioned = new Map<string, Statement>();

  add(actions: string[], grant: KmsGrant, condition: Record<string, unknown> = {}): void {
    const conditions = {
      ...condition,
      ...(grant.alias !== undefined && {
        // Multivalued (a key has many aliases): ForAnyValue, which a key with no alias fails.
        'ForAnyValue:StringEquals': { 'kms:ResourceAliases': [grant.alias] },
      }),
    };
    if (Object.keys(conditions).length === 0) {
      const id = actions.join(',');
      const entry = this.#plain.get(id) ?? { actions, resources: new Map() };
      entry.resources.set(JSON.stringify(grant.resource), grant.resource);
      this.#plain.set(id, entry);
      return;
    }
    const statement = {
      Effect: 'Allow',
      Action: actions,
      Resource: [grant.resource],
      Condition: conditions,
    };
    this.#conditioned.set(JSON.stringify(statement), statement);
  }

  /**
   * A secret encrypted with a customer managed key: GetSecretValue needs kms:Decrypt on it,
   * which Secrets Manager calls with the secret's ARN as encryption context.
   * https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html
   */
  addSecretKey(secretArn: string, keyId: string): void {
    const where = secretKeyWhere(secretArn);
    this.add(['kms:Decrypt'], kmsGrant(keyId, where), {
      StringEquals: {
        'kms:ViaService': { 'Fn::Join': ['', ['secretsmanager.', where.region, '.amazonaws.com']] },
        'kms:EncryptionContext:SecretARN': secretArn,
      },
    });
  }

  statements(): Statement[] {
    return [
      ...[...this.#plain.values()].map(({ actions, resources }) => ({
        Effect: 'Allow',
        Action: actions,
        Resource: [...resources.values()],
      })),
      ...this.#conditioned.values(),
    ];
  }
}

const queueArns = [
  'EventsQueue',
  'EventsDeadLetterQueue',
  'TasksQueue',
  'TasksDeadLetterQueue',
].map((name) => ({ 'Fn::GetAtt': [name, 'Arn'] }));
const deadLetterQueueArns = ['EventsDeadLetterQueue', 'TasksDeadLetterQueue'].map((name) => ({
  'Fn::GetAtt': [name, 'Arn'],
}));

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
  const kms = new KmsStatements();
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
    if (rule.s3.kmsKeyId) {
      // SSE-KMS writes: GenerateDataKey, and Decrypt for multipart uploads.
      kms.add(WRITE_KEY_ACTIONS, kmsGrant(rule.s3.kmsKeyId, writeKeyWhere(rule)));
    }
    for (const keyId of rule.s3.readKmsKeyIds ?? []) {
      kms.add(['kms:Decrypt'], kmsGrant(keyId, readKeyWhere(rule)));
    }
    const credential = rule.azure.credential;
    if (credential && 'secretArn' in credential) {
      secrets.add(credential.secretArn);
      if (credential.kmsKeyId) kms.addSecretKey(credential.secretArn, credential.kmsKeyId);
    }
    if (credential && 'workloadIdentity' in credential) federated = true;
  }
  const auth = config.eventGrid?.auth;
  if (auth?.mode === 'shared-secret' && 'secretArn' in auth) {
    secrets.add(auth.secretArn);
    if (auth.kmsKeyId) kms.addSecretKey(auth.secretArn, auth.kmsKeyId);
  }

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
      // HeadObject of a missing key answers 404 only to a caller with s3:ListBucket on the
      // bucket, else 403; that check carries no s3:prefix, so the prefix condition applies
      // only where a request names one (...IfExists). A listing that names no prefix cannot be
      // told from it and is allowed too; one that names a prefix stays under the rules'.
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html
      // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_IfExists
      statements.push({
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: [`arn:aws:s3:::${bucket}`],
        // '' too: whether S3's own check for HeadObject carries no s3:prefix or an empty one is
        // not documented, and an empty prefix lists no more than a listing that names none.
        Condition: { StringLikeIfExists: { 's3:prefix': ['', ...prefixes] } },
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
  statements.push(...kms.statements());
  if (secrets.size > 0) {
    statements.push({
      Effect: 'Allow',
      Action: ['secretsmanager:GetSecretValue'],
      Resource: [...secrets],
    });
  }
  if (federated) {
    // AWS outbound identity federation: the token Azure exchanges for its own, and no other
    // (audience, lifetime and algorithm as the functions request them). The audience key is
    // multivalued; ForAllValues also holds for a request without one, which STS refuses.
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_outbound_policies.html
    statements.push({
      Effect: 'Allow',
      Action: ['sts:GetWebIdentityToken'],
      Resource: ['*'],
      Condition: {
        'ForAllValues:StringEquals': { 'sts:IdentityTokenAudience': [WEB_IDENTITY_TOKEN.audience] },
        NumericLessThanEquals: { 'sts:DurationSeconds': WEB_IDENTITY_TOKEN.durationSeconds },
        StringEquals: { 'sts:SigningAlgorithm': WEB_IDENTITY_TOKEN.signingAlgorithm },
      },
    });
  }
  statements.push({
    Effect: 'Allow',
    Action: ['sqs:SendMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes'],
    Resource: queueArns,
  });
  // The redrive function reads the dead-letter queues (holding what it reads with
  // ChangeMessageVisibility, above) and deletes what it sent back; the framework grants receive
  // and delete only on the event sources, the work queues.
  statements.push({
    Effect: 'Allow',
    Action: ['sqs:ReceiveMessage', 'sqs:DeleteMessage'],
    Resource: deadLetterQueueArns,
  });
  return statements;
}

/**
 * The events queue's policy: only S3, and only for the configured buckets of their owners'
 * accounts, may send to it (one statement per owner, so a bucket is accepted only from its own).
 */
export function eventsQueuePolicy(config: ReplicationConfig): Statement {
  const owners = new Map<string, { owner: DeployString; buckets: Set<string> }>();
  for (const rule of config.rules) {
    const owner = bucketOwner(rule);
    const id = JSON.stringify(owner);
    const entry = owners.get(id) ?? { owner, buckets: new Set<string>() };
    entry.buckets.add(rule.s3.bucket);
    owners.set(id, entry);
  }
  return {
    Version: '2012-10-17',
    Statement: [...owners.values()].map(({ owner, buckets }) => ({
      Sid: typeof owner === 'string' ? `S3EventNotificationsFrom${owner}` : 'S3EventNotifications',
      Effect: 'Allow',
      Principal: { Service: 's3.amazonaws.com' },
      Action: 'sqs:SendMessage',
      Resource: { 'Fn::GetAtt': ['EventsQueue', 'Arn'] },
      // A bucket ARN names no account, and a deleted bucket's name can be taken by another
      // account: aws:SourceAccount is the confused-deputy guard beside aws:SourceArn.
      // https://docs.aws.amazon.com/AmazonS3/latest/userguide/grant-destinations-permissions-to-s3.html
      Condition: {
        ArnLike: { 'aws:SourceArn': [...buckets].map((bucket) => `arn:aws:s3:::${bucket}`) },
        StringEquals: { 'aws:SourceAccount': owner },
      },
    })),
  };
}

/** The pipeline's timing as serverless.yml reads it (`${self:custom.generated.timing.*}`). */
export function timingVariables(): Record<string, number> {
  return {
    copyTimeout: timing.COPY_TIMEOUT_SECONDS,
    planTimeout: timing.PLAN_TIMEOUT_SECONDS,
    redriveTimeout: timing.REDRIVE_TIMEOUT_SECONDS,
    reconcileTimeout: timing.RECONCILE_TIMEOUT_SECONDS,
    webhookTimeout: timing.WEBHOOK_TIMEOUT_SECONDS,
    tasksVisibilityTimeout: timing.TASKS_VISIBILITY_TIMEOUT_SECONDS,
    eventsVisibilityTimeout: timing.EVENTS_VISIBILITY_TIMEOUT_SECONDS,
    maxReceives: timing.MAX_RECEIVES,
    deadLetterRetention: timing.DEAD_LETTER_RETENTION_SECONDS,
  };
}

// EventBridge's schedule expressions, as the framework's schema checks them (it only warns).
// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html
const RATE = /^rate\((?:1 (?:minute|hour|day)|(?:1\d+|[2-9]\d*) (?:minute|hour|day)s)\)$/;
const CRON = /^cron\(\S+ \S+ \S+ \S+ \S+ \S+\)$/;

/**
 * The reconcile function's events: none unless a schedule is given
 * (`--param="reconcileSchedule=rate(6 hours)"`), so that a stack lists its buckets and
 * containers only when its operator asks for it.
 */
export function reconcileEvents(schedule: unknown): Record<string, unknown>[] {
  const expression = typeof schedule === 'string' ? schedule.trim() : '';
  if (expression === '') return [];
  if (!RATE.test(expression) && !CRON.test(expression)) {
    throw new ConfigError(
      `reconcileSchedule: "${expression}" is not a schedule expression like "rate(6 hours)" or "cron(0 3 * * ? *)"`,
    );
  }
  return [
    {
      schedule: {
        rate: [expression],
        description: 'Reconcile the rules: list both sides, queue what differs',
        // What `serverless invoke -f reconcile` with no data would pass: every rule.
        input: {},
      },
    },
  ];
}

/** What a stage may tune (serverless.yml's `custom.tuning`, from `--param`s), checked. */
export interface Tuning {
  webhookMemory: number;
  planMemory: number;
  copyMemory: number;
  planConcurrency: number;
  copyConcurrency: number;
  planBatchSize: number;
  copyBatchSize: number;
  logRetentionDays: number;
}

/** The defaults: what the local mirror runs with, and a stage without `--param`s. */
export const DEFAULT_TUNING: Tuning = {
  webhookMemory: 512,
  planMemory: 1024,
  copyMemory: timing.COPY_MEMORY_MB,
  planConcurrency: 10,
  copyConcurrency: 10,
  planBatchSize: timing.PLAN_BATCH_SIZE,
  copyBatchSize: timing.COPY_BATCH_SIZE,
  logRetentionDays: 30,
};

// The values CloudWatch Logs takes for a log group's retention.
// https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html
const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288,
  3653,
];

function wholeNumber(value: unknown, parameter: string, min: number, max: number, why: string) {
  const number = Number(value);
  if (String(value).trim() === '' || !Number.isInteger(number) || number < min || number > max) {
    throw new ConfigError(
      `${parameter}: "${String(value)}" is not a whole number from ${min} to ${max} (${why})`,
    );
  }
  return number;
}

/**
 * The tuning parameters, checked against what Lambda and CloudWatch take: memory 128-10,240 MB;
 * an SQS event source's maximum concurrency 2-1,000; a batch of at most 10 records, the most
 * an event source takes without a batching window; a log retention CloudWatch knows.
 * https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html
 * https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html
 */
export function tuning(input: Partial<Record<keyof Tuning, unknown>>): Tuning {
  const value = (name: keyof Tuning) =>
    input[name] === undefined || input[name] === null ? DEFAULT_TUNING[name] : input[name];
  const memory = (name: keyof Tuning) =>
    wholeNumber(value(name), name, 128, 10_240, 'Lambda memory in MB');
  const concurrency = (name: keyof Tuning) =>
    wholeNumber(value(name), name, 2, 1000, "an SQS event source's maximum concurrency");
  const batch = (name: keyof Tuning) =>
    wholeNumber(value(name), name, 1, 10, 'records per invocation without a batching window');
  const retention = Number(value('logRetentionDays'));
  if (!LOG_RETENTION_DAYS.includes(retention)) {
    throw new ConfigError(
      `logRetentionDays: "${String(value('logRetentionDays'))}" is not one of CloudWatch's retention periods (${LOG_RETENTION_DAYS.join(', ')})`,
    );
  }
  return {
    webhookMemory: memory('webhookMemory'),
    planMemory: memory('planMemory'),
    copyMemory: memory('copyMemory'),
    planConcurrency: concurrency('planConcurrency'),
    copyConcurrency: concurrency('copyConcurrency'),
    planBatchSize: batch('planBatchSize'),
    copyBatchSize: batch('copyBatchSize'),
    logRetentionDays: retention,
  };
}

/** The alarms' settings (serverless.yml's `custom.alarms`, from `--param`s), checked. */
export interface AlarmSettings {
  /** AlarmActions and OKActions: the SNS topic given, or none. */
  actions: string[];
  eventsAgeSeconds: number;
  tasksAgeSeconds: number;
}

function positiveSeconds(value: unknown, parameter: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0 || String(value).trim() === '') {
    throw new ConfigError(`${parameter}: "${String(value)}" is not a number of seconds`);
  }
  return seconds;
}

export function alarmSettings(input: {
  topicArn?: unknown;
  eventsAgeSeconds?: unknown;
  tasksAgeSeconds?: unknown;
}): AlarmSettings {
  const topic = typeof input.topicArn === 'string' ? input.topicArn.trim() : '';
  if (topic !== '' && !/^arn:aws[\w-]*:sns:[\w-]+:\d{12}:[\w-]{1,256}$/.test(topic)) {
    throw new ConfigError(`alarmTopicArn: "${topic}" is not the ARN of an SNS topic`);
  }
  return {
    actions: topic === '' ? [] : [topic],
    eventsAgeSeconds: positiveSeconds(input.eventsAgeSeconds, 'eventsAgeAlarmSeconds'),
    tasksAgeSeconds: positiveSeconds(input.tasksAgeSeconds, 'tasksAgeAlarmSeconds'),
  };
}

/** The stack's functions, as serverless.yml names them, and their logical ids. */
export const FUNCTIONS = ['eventgrid', 'plan', 'copy', 'redrive', 'reconcile'] as const;
const functionLogicalId = (name: string) =>
  `${name.charAt(0).toUpperCase()}${name.slice(1)}LambdaFunction`;

/** A CloudFormation value, as the dashboard's body joins it in. */
type Intrinsic = { Ref: string } | { 'Fn::GetAtt': [string, string] };

/**
 * Writes `body` as JSON, with each `@@name@@` in it replaced by `refs[name]`: the string
 * CloudFormation makes of the `Fn::Join`, once names and Region are known.
 */
function joinJson(
  body: unknown,
  refs: Record<string, Intrinsic>,
): { 'Fn::Join': [string, unknown[]] } {
  const parts: unknown[] = [];
  JSON.stringify(body)
    .split(/@@(\w+)@@/)
    .forEach((part, index) => {
      if (index % 2 === 0) {
        if (part !== '') parts.push(part);
        return;
      }
      const ref = refs[part];
      if (!ref) throw new Error(`dashboard: no value for @@${part}@@`);
      parts.push(ref);
    });
  return { 'Fn::Join': ['', parts] };
}

export interface DashboardOptions {
  /** The functions' EMF namespace and `service` dimension (POWERTOOLS_*). */
  namespace: string;
  service: string;
  alarms?: Pick<AlarmSettings, 'eventsAgeSeconds' | 'tasksAgeSeconds'>;
}

/**
 * The CloudWatch dashboard's body: replication latency, objects and bytes per direction,
 * skips by reason, failures by class, the work queues' depth and age, the dead letters, and
 * the functions' errors and throttles. Queue and function names and the Region are joined in
 * by CloudFormation.
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html
 */
export function dashboardBody({ namespace, service, alarms }: DashboardOptions) {
  const refs: Record<string, Intrinsic> = { Region: { Ref: 'AWS::Region' } };
  for (const queue of [
    'EventsQueue',
    'TasksQueue',
    'EventsDeadLetterQueue',
    'TasksDeadLetterQueue',
  ]) {
    refs[queue] = { 'Fn::GetAtt': [queue, 'QueueName'] };
  }
  for (const name of FUNCTIONS) refs[name] = { Ref: functionLogicalId(name) };

  const ours = (metric: string, ...rest: unknown[]) => [
    namespace,
    metric,
    'service',
    service,
    ...rest,
  ];
  const directions = [
    ['s3-to-azure', 'S3 -> Azure'],
    ['azure-to-s3', 'Azure -> S3'],
  ] as const;
  const byDirection = (metric: string) =>
    directions.map(([direction, label]) => ours(metric, 'direction', direction, { label }));
  // A dimension's values are not known in advance: SEARCH finds every one the functions sent.
  // https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/search-expression-syntax.html
  const search = (metric: string, dimension: string, id: string) => [
    {
      id,
      expression: `SEARCH('{${namespace},${dimension},service} MetricName="${metric}" service="${service}"', 'Sum', 300)`,
    },
  ];
  const queue = (metric: string, logicalId: string, label: string) => [
    'AWS/SQS',
    metric,
    'QueueName',
    `@@${logicalId}@@`,
    { label },
  ];
  const lambda = (metric: string) =>
    FUNCTIONS.map((name) => ['AWS/Lambda', metric, 'FunctionName', `@@${name}@@`, { label: name }]);
  const threshold = (value: number | undefined, label: string) =>
    value === undefined ? [] : [{ value, label }];

  const widget = (
    x: number,
    y: number,
    width: number,
    title: string,
    stat: string,
    metrics: unknown[],
    extra: Record<string, unknown> = {},
  ) => ({
    type: 'metric',
    x,
    y,
    width,
    height: 6,
    properties: {
      title,
      region: '@@Region@@',
      view: 'timeSeries',
      period: 300,
      stat,
      metrics,
      ...extra,
    },
  });

  const body = {
    widgets: [
      widget(0, 0, 8, 'Replication latency, event to commit (ms)', 'p99', [
        ours('ReplicationLatency', { stat: 'p50', label: 'p50' }),
        ours('ReplicationLatency', { stat: 'p99', label: 'p99' }),
      ]),
      widget(8, 0, 8, 'Objects replicated by direction', 'Sum', byDirection('ObjectsReplicated')),
      widget(16, 0, 8, 'Bytes replicated by direction', 'Sum', byDirection('BytesReplicated')),
      widget(0, 6, 8, 'Skipped by reason', 'Sum', search('Skipped', 'reason', 'skipped')),
      widget(8, 6, 8, 'Failures by class', 'Sum', search('Failures', 'class', 'failures')),
      widget(16, 6, 8, 'Events, tasks, deletes, conflicts', 'Sum', [
        ours('EventsReceived', { label: 'events received' }),
        ours('TasksPlanned', { label: 'tasks planned' }),
        ours('ObjectsDeleted', { label: 'objects deleted' }),
        ours('Conflicts', { label: 'conflicts' }),
        ours('TasksContinued', { label: 'tasks continued' }),
        ours('EventsUnrouted', { label: 'events unrouted' }),
        ours('EventsDeadLettered', { label: 'events dead-lettered' }),
      ]),
      widget(0, 12, 8, 'Work queues: visible and in flight', 'Maximum', [
        queue('ApproximateNumberOfMessagesVisible', 'EventsQueue', 'events visible'),
        queue('ApproximateNumberOfMessagesNotVisible', 'EventsQueue', 'events in flight'),
        queue('ApproximateNumberOfMessagesVisible', 'TasksQueue', 'tasks visible'),
        queue('ApproximateNumberOfMessagesNotVisible', 'TasksQueue', 'tasks in flight'),
      ]),
      widget(
        8,
        12,
        8,
        'Work queues: age of the oldest message (s)',
        'Maximum',
        [
          queue('ApproximateAgeOfOldestMessage', 'EventsQueue', 'events'),
          queue('ApproximateAgeOfOldestMessage', 'TasksQueue', 'tasks'),
        ],
        {
          annotations: {
            horizontal: [
              ...threshold(alarms?.eventsAgeSeconds, 'events alarm'),
              ...threshold(alarms?.tasksAgeSeconds, 'tasks alarm'),
            ],
          },
        },
      ),
      widget(16, 12, 8, 'Dead letters', 'Maximum', [
        queue('ApproximateNumberOfMessagesVisible', 'EventsDeadLetterQueue', 'events dead letters'),
        queue('ApproximateNumberOfMessagesVisible', 'TasksDeadLetterQueue', 'tasks dead letters'),
      ]),
      widget(0, 18, 12, 'Function errors', 'Sum', lambda('Errors')),
      widget(12, 18, 12, 'Function throttles', 'Sum', lambda('Throttles')),
    ],
  };
  return joinJson(body, refs);
}

interface ResolverArguments {
  resolveConfigurationProperty(path: string[]): Promise<unknown>;
}

/**
 * What serverless.yml reads with `${file(./dist/serverless-vars.cjs):…}`: the validated
 * configuration's IAM statements and queue policy, and the pipeline's timing. A configuration
 * that does not validate, or is for local use only, stops the deploy with the error naming
 * the rule and field.
 */
export default async function serverlessVariables({
  resolveConfigurationProperty,
}: ResolverArguments) {
  const file = String(
    (await resolveConfigurationProperty(['custom', 'configFile'])) ?? 'replication.yml',
  );
  const config = await loadConfig(isAbsolute(file) ? file : resolve(process.cwd(), file));
  checkDeployable(config);
  const alarms = alarmSettings({
    topicArn: await resolveConfigurationProperty(['custom', 'alarms', 'topicArn']),
    eventsAgeSeconds: await resolveConfigurationProperty(['custom', 'alarms', 'eventsAgeSeconds']),
    tasksAgeSeconds: await resolveConfigurationProperty(['custom', 'alarms', 'tasksAgeSeconds']),
  });
  const tuned: Partial<Record<keyof Tuning, unknown>> = {};
  for (const name of Object.keys(DEFAULT_TUNING) as (keyof Tuning)[]) {
    tuned[name] = await resolveConfigurationProperty(['custom', 'tuning', name]);
  }
  const environment = (name: string) =>
    resolveConfigurationProperty(['provider', 'environment', name]).then((value) =>
      typeof value === 'string' ? value : undefined,
    );
  return {
    iamStatements: iamStatements(config),
    eventsQueuePolicy: eventsQueuePolicy(config),
    timing: timingVariables(),
    tuning: tuning(tuned),
    reconcileEvents: reconcileEvents(
      await resolveConfigurationProperty(['custom', 'reconcileSchedule']),
    ),
    alarms,
    dashboardBody: dashboardBody({
      namespace: (await environment('POWERTOOLS_METRICS_NAMESPACE')) ?? 'S3AzureReplicator',
      service: (await environment('POWERTOOLS_SERVICE_NAME')) ?? 's3-azure-replicator',
      alarms,
    }),
  };
}
