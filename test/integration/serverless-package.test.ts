import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { readServerlessWiring } from '../../src/local/serverless-wiring.ts';
import {
  COPY_TIMEOUT_SECONDS,
  EVENTS_VISIBILITY_TIMEOUT_SECONDS,
  MAX_RECEIVES,
  RECONCILE_TIMEOUT_SECONDS,
  REDRIVE_TIMEOUT_SECONDS,
  TASKS_VISIBILITY_TIMEOUT_SECONDS,
} from '../../src/queue/timing.ts';
import { ZIP_BUDGET_BYTES } from '../bench/functions.ts';
import { extractZip, readZip } from '../bench/zip.ts';
import { allows } from '../support/iam.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const serverless = join(root, 'node_modules', '.bin', 'serverless');
const fixture = 'test/fixtures/deploy.replication.yml';
const FUNCTIONS = ['eventgrid', 'plan', 'copy', 'redrive', 'reconcile'];

type Resource = { Type: string; Properties: Record<string, unknown> };
type Template = {
  Resources: Record<string, Resource>;
  Outputs: Record<string, { Value: unknown }>;
};

async function packageWith(config: string, params: string[] = []) {
  const out = await mkdtemp(join(tmpdir(), 's3az-package-'));
  const result = await promisify(execFile)(
    serverless,
    [
      'package',
      '--stage',
      'test',
      `--param=config=${config}`,
      ...params.map((param) => `--param=${param}`),
      '--package',
      out,
    ],
    { cwd: root, env: { ...process.env, SLS_TELEMETRY_DISABLED: '1' } },
  ).catch((error: { stdout?: string; stderr?: string }) => ({
    failed: true,
    stdout: error.stdout ?? '',
    stderr: error.stderr ?? '',
  }));
  return { out, result };
}

// Each `serverless package` takes seconds: one run per set of parameters, shared by the tests.
const packaged = new Map<string, Promise<{ out: string; template: Template }>>();
function templateWith(params: string[] = []) {
  const id = JSON.stringify(params);
  let run = packaged.get(id);
  if (!run) {
    run = packageWith(fixture, params).then(async ({ out, result }) => {
      expect('failed' in result ? result.stderr : '').toBe('');
      const text = await readFile(join(out, 'cloudformation-template-update-stack.json'), 'utf8');
      return { out, template: JSON.parse(text) as Template };
    });
    packaged.set(id, run);
  }
  return run;
}

const topicArn = 'arn:aws:sns:us-east-1:123456789012:replicator-alarms';
const withParameters = [
  'reconcileSchedule=rate(6 hours)',
  `alarmTopicArn=${topicArn}`,
  'tasksAgeAlarmSeconds=7200',
  'copyMemory=3008',
  'planMemory=512',
  'webhookMemory=256',
  'copyConcurrency=25',
  'planConcurrency=5',
  'copyBatchSize=2',
  'planBatchSize=7',
  'logRetentionDays=14',
];

const ofType = (template: Template, type: string) =>
  Object.entries(template.Resources).filter(([, resource]) => resource.Type === type);

/** The alarms on one metric, by the logical id of the resource their one dimension names. */
function alarmsOn(template: Template, metric: string): Map<string, Record<string, unknown>> {
  const alarms = new Map<string, Record<string, unknown>>();
  for (const [, alarm] of ofType(template, 'AWS::CloudWatch::Alarm')) {
    if (alarm.Properties.MetricName !== metric) continue;
    const [dimension] = alarm.Properties.Dimensions as { Value: unknown }[];
    const value = dimension?.Value as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
    const target = value.Ref ?? value['Fn::GetAtt']?.[0];
    expect(target, `${metric}: the alarm's dimension names a resource`).toBeDefined();
    expect(alarms.has(String(target)), `one ${metric} alarm on ${target}`).toBe(false);
    alarms.set(String(target), alarm.Properties);
  }
  return alarms;
}

/** Every Ref and GetAtt in a value: what CloudFormation must find in the template. */
function references(value: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(value)) for (const item of value) references(item, found);
  else if (value && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    if (typeof object.Ref === 'string' && !object.Ref.startsWith('AWS::')) found.add(object.Ref);
    const att = object['Fn::GetAtt'];
    if (Array.isArray(att)) found.add(String(att[0]));
    for (const item of Object.values(object)) references(item, found);
  }
  return found;
}

function statementsOf(resources: Record<string, Resource>): unknown[] {
  const policies = resources.IamRoleLambdaExecution?.Properties.Policies as
    | { PolicyDocument: { Statement: unknown[] } }[]
    | undefined;
  return policies?.flatMap((policy) => policy.PolicyDocument.Statement) ?? [];
}

async function configFile(yaml: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 's3az-config-'));
  const config = join(dir, 'replication.yml');
  await writeFile(config, yaml);
  return config;
}

describe('File: serverless.yml', () => {
  it('packages the functions, queues, redrive policies and a policy scoped to the rules', async () => {
    const { template } = await templateWith();
    const resources = template.Resources;

    const copy = resources.CopyLambdaFunction?.Properties ?? {};
    expect(copy.Runtime).toBe('nodejs22.x');
    expect(copy.Handler).toBe('dist/handlers/copy.handler');
    expect(copy.Timeout).toBe(COPY_TIMEOUT_SECONDS);
    expect(resources.TasksQueue?.Properties).toMatchObject({
      VisibilityTimeout: TASKS_VISIBILITY_TIMEOUT_SECONDS,
      RedrivePolicy: { maxReceiveCount: MAX_RECEIVES },
      SqsManagedSseEnabled: true,
    });
    expect(resources.EventsQueue?.Properties).toMatchObject({
      RedrivePolicy: { maxReceiveCount: MAX_RECEIVES },
      // An Event Grid event is up to 1 MB, stored one per message, dead letters alike.
      MaximumMessageSize: 1048576,
    });
    expect(resources.EventsDeadLetterQueue?.Properties).toMatchObject({
      MaximumMessageSize: 1048576,
    });
    const mappings = Object.values(resources).filter(
      (resource) => resource.Type === 'AWS::Lambda::EventSourceMapping',
    );
    expect(mappings).toHaveLength(2);
    for (const mapping of mappings) {
      expect(mapping.Properties.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
    }
    const routes = Object.values(resources)
      .filter((resource) => resource.Type === 'AWS::ApiGatewayV2::Route')
      .map((resource) => resource.Properties.RouteKey);
    expect(routes.sort()).toEqual(['OPTIONS /eventgrid', 'POST /eventgrid']);

    const policy = JSON.stringify(resources.IamRoleLambdaExecution?.Properties);
    expect(policy).toContain('arn:aws:s3:::my-data-bucket/incoming/*');
    expect(policy).not.toContain('arn:aws:s3:::*');
    expect(policy).toContain('arn:aws:secretsmanager:us-east-1:123456789012:secret:azure-key');
    expect(JSON.stringify(resources.EventsQueuePolicy?.Properties)).toContain(
      'arn:aws:s3:::my-data-bucket',
    );
    // Confused-deputy protection: the bucket's owner, this stack's account, resolved by
    // CloudFormation (no AWS credentials are needed to package).
    expect(resources.EventsQueuePolicy?.Properties).toHaveProperty(
      ['PolicyDocument', 'Statement', 0, 'Condition'],
      {
        ArnLike: { 'aws:SourceArn': ['arn:aws:s3:::my-data-bucket'] },
        StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
      },
    );
    // HeadObject of a missing key answers 404 only with s3:ListBucket on the bucket, which
    // it asks for with no s3:prefix.
    const listBucket = statementsOf(resources).filter(
      (statement) =>
        JSON.stringify((statement as { Action: unknown }).Action) === '["s3:ListBucket"]',
    );
    expect(listBucket).toEqual([
      expect.objectContaining({
        Effect: 'Allow',
        Condition: { StringLikeIfExists: { 's3:prefix': ['', 'incoming/*'] } },
      }),
    ]);
    expect(JSON.stringify(listBucket)).toContain('"arn:aws:s3:::my-data-bucket"');
    const environment = JSON.stringify(copy.Environment);
    expect(environment).toContain('S3AZ_TASKS_DLQ_URL');
    expect(environment).not.toMatch(/AccountKey|SharedAccessSignature/);
    // The plan step tells the stack's own S3 writes by their principal: its role's id, and its
    // own session name for a rule's roleArn.
    expect(copy.Environment).toHaveProperty(
      ['Variables', 'S3AZ_ROLE_SESSION_NAME'],
      's3-azure-replicator-test',
    );
    expect(copy.Environment).toHaveProperty(['Variables', 'S3AZ_OWN_S3_PRINCIPALS'], {
      'Fn::Join': [
        '',
        [
          'AWS:',
          { 'Fn::GetAtt': ['IamRoleLambdaExecution', 'RoleId'] },
          ':,*:s3-azure-replicator-test',
        ],
      ],
    });
  });

  it('packages the redrive and reconcile functions with their handlers and timeouts, and no schedule by default', async () => {
    const { out, template } = await templateWith();
    const resources = template.Resources;
    expect(resources.RedriveLambdaFunction?.Properties).toMatchObject({
      Handler: 'dist/handlers/redrive.handler',
      Timeout: REDRIVE_TIMEOUT_SECONDS,
    });
    expect(resources.ReconcileLambdaFunction?.Properties).toMatchObject({
      Handler: 'dist/handlers/reconcile.handler',
      Timeout: RECONCILE_TIMEOUT_SECONDS,
    });
    // Each bundle is in its function's package (a zip names its files in plain text).
    for (const name of FUNCTIONS) {
      const zip = await readFile(join(out, `${name}.zip`));
      expect(zip.includes(`dist/handlers/${name}.mjs`), name).toBe(true);
    }
    // Neither has an event source: no queue, and no schedule without the parameter.
    const mappings = ofType(template, 'AWS::Lambda::EventSourceMapping').map(
      ([, mapping]) =>
        (mapping.Properties.FunctionName as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0],
    );
    expect(mappings.sort()).toEqual(['CopyLambdaFunction', 'PlanLambdaFunction']);
    expect(ofType(template, 'AWS::Events::Rule')).toEqual([]);
    expect(ofType(template, 'AWS::Scheduler::Schedule')).toEqual([]);
    expect(JSON.stringify(ofType(template, 'AWS::Lambda::Permission'))).not.toContain('Reconcile');
  });

  it('schedules the reconcile function with the reconcileSchedule parameter', async () => {
    const { template } = await templateWith(withParameters);
    const rules = ofType(template, 'AWS::Events::Rule');
    expect(rules).toHaveLength(1);
    const [logicalId, rule] = rules[0] as [string, Resource];
    expect(rule.Properties).toMatchObject({
      ScheduleExpression: 'rate(6 hours)',
      State: 'ENABLED',
      Targets: [{ Arn: { 'Fn::GetAtt': ['ReconcileLambdaFunction', 'Arn'] } }],
    });
    // EventBridge may invoke the function, from this rule only.
    expect(
      ofType(template, 'AWS::Lambda::Permission').map(([, permission]) => permission),
    ).toContainEqual({
      Type: 'AWS::Lambda::Permission',
      Properties: expect.objectContaining({
        FunctionName: { 'Fn::GetAtt': ['ReconcileLambdaFunction', 'Arn'] },
        Principal: 'events.amazonaws.com',
        SourceArn: { 'Fn::GetAtt': [logicalId, 'Arn'] },
      }),
    });
  });

  it("alarms on each dead-letter queue, the age of each work queue, and every function's errors and throttles, without actions by default", async () => {
    const { template } = await templateWith();
    const functions = ofType(template, 'AWS::Lambda::Function').map(([logicalId]) => logicalId);
    expect(functions.sort()).toEqual([
      'CopyLambdaFunction',
      'EventgridLambdaFunction',
      'PlanLambdaFunction',
      'ReconcileLambdaFunction',
      'RedriveLambdaFunction',
    ]);

    const deadLetters = alarmsOn(template, 'ApproximateNumberOfMessagesVisible');
    expect([...deadLetters.keys()].sort()).toEqual([
      'EventsDeadLetterQueue',
      'TasksDeadLetterQueue',
    ]);
    for (const alarm of deadLetters.values()) {
      expect(alarm).toMatchObject({
        Namespace: 'AWS/SQS',
        Statistic: 'Maximum',
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        // An idle queue sends no data: that is no dead letter.
        TreatMissingData: 'notBreaching',
      });
    }

    const ages = alarmsOn(template, 'ApproximateAgeOfOldestMessage');
    expect([...ages.keys()].sort()).toEqual(['EventsQueue', 'TasksQueue']);
    expect(ages.get('EventsQueue')).toMatchObject({ Statistic: 'Maximum', Threshold: 900 });
    expect(ages.get('TasksQueue')).toMatchObject({ Statistic: 'Maximum', Threshold: 3600 });
    // A batch whose invocation died comes back after the visibility timeout: the default
    // thresholds are below it, so a stuck queue alarms.
    expect(900).toBeLessThan(EVENTS_VISIBILITY_TIMEOUT_SECONDS);
    expect(3600).toBeLessThan(TASKS_VISIBILITY_TIMEOUT_SECONDS);

    for (const metric of ['Errors', 'Throttles']) {
      const alarms = alarmsOn(template, metric);
      expect([...alarms.keys()].sort(), metric).toEqual(functions.sort());
      for (const alarm of alarms.values()) {
        expect(alarm).toMatchObject({
          Namespace: 'AWS/Lambda',
          Statistic: 'Sum',
          Threshold: 0,
          ComparisonOperator: 'GreaterThanThreshold',
          TreatMissingData: 'notBreaching',
        });
      }
    }

    const alarms = ofType(template, 'AWS::CloudWatch::Alarm');
    expect(alarms).toHaveLength(2 + 2 + 2 * functions.length);
    for (const [logicalId, alarm] of alarms) {
      expect(alarm.Properties.AlarmName, logicalId).toMatch(/^s3-azure-replicator-test-/);
      expect(alarm.Properties.AlarmDescription, logicalId).toEqual(expect.any(String));
      expect(alarm.Properties.AlarmActions ?? [], logicalId).toEqual([]);
      expect(alarm.Properties.OKActions ?? [], logicalId).toEqual([]);
    }
  });

  it("notifies the alarmTopicArn parameter's topic from every alarm, and takes the age thresholds", async () => {
    const { template } = await templateWith(withParameters);
    const alarms = ofType(template, 'AWS::CloudWatch::Alarm');
    expect(alarms).toHaveLength(14);
    for (const [logicalId, alarm] of alarms) {
      expect(alarm.Properties.AlarmActions, logicalId).toEqual([topicArn]);
      expect(alarm.Properties.OKActions, logicalId).toEqual([topicArn]);
    }
    const ages = alarmsOn(template, 'ApproximateAgeOfOldestMessage');
    expect(ages.get('EventsQueue')?.Threshold).toBe(900);
    expect(ages.get('TasksQueue')?.Threshold).toBe(7200);
  });

  it("takes a stage's memory, concurrency, batch sizes and log retention as parameters", async () => {
    const settings = (template: Template) => {
      const fn = (name: string) => template.Resources[`${name}LambdaFunction`]?.Properties ?? {};
      const mapping = (queue: string) =>
        ofType(template, 'AWS::Lambda::EventSourceMapping').find(([, resource]) =>
          JSON.stringify(resource.Properties.EventSourceArn).includes(`"${queue}"`),
        )?.[1].Properties ?? {};
      const groups = ofType(template, 'AWS::Logs::LogGroup').map(
        ([, group]) => group.Properties.RetentionInDays,
      );
      return {
        memory: [fn('Eventgrid').MemorySize, fn('Plan').MemorySize, fn('Copy').MemorySize],
        plan: [mapping('EventsQueue').BatchSize, mapping('EventsQueue').ScalingConfig],
        copy: [mapping('TasksQueue').BatchSize, mapping('TasksQueue').ScalingConfig],
        retention: [...new Set(groups)],
      };
    };
    expect(settings((await templateWith()).template)).toEqual({
      memory: [512, 1024, 2048],
      plan: [10, { MaximumConcurrency: 10 }],
      copy: [4, { MaximumConcurrency: 10 }],
      retention: [30],
    });
    expect(settings((await templateWith(withParameters)).template)).toEqual({
      memory: [256, 512, 3008],
      plan: [7, { MaximumConcurrency: 5 }],
      copy: [2, { MaximumConcurrency: 25 }],
      retention: [14],
    });
    const { result } = await packageWith(fixture, ['copyBatchSize=11']);
    expect(`${result.stdout}${'stderr' in result ? result.stderr : ''}`).toMatch(
      /copyBatchSize: "11" is not a whole number from 1 to 10/,
    );
  });

  it('refuses an alarm topic or threshold that cannot be one, naming the parameter', async () => {
    const { result } = await packageWith(fixture, [
      'alarmTopicArn=arn:aws:sqs:us-east-1:123456789012:not-a-topic',
    ]);
    expect('failed' in result).toBe(true);
    expect(`${result.stdout}${result.stderr}`).toMatch(
      /alarmTopicArn.*not the ARN of an SNS topic/,
    );
  });

  it('makes a dashboard of the queues and functions, and outputs its name, its URL and the queue URLs', async () => {
    const { template } = await templateWith();
    const dashboards = ofType(template, 'AWS::CloudWatch::Dashboard');
    expect(dashboards).toHaveLength(1);
    const [logicalId, dashboard] = dashboards[0] as [string, Resource];
    expect(dashboard.Properties.DashboardName).toBe('s3-azure-replicator-test');
    const body = dashboard.Properties.DashboardBody;
    const named = references(body);
    for (const name of [
      'EventsQueue',
      'TasksQueue',
      'EventsDeadLetterQueue',
      'TasksDeadLetterQueue',
      ...ofType(template, 'AWS::Lambda::Function').map(([id]) => id),
    ]) {
      expect(named.has(name), name).toBe(true);
    }
    // Everything it names is in the stack, so CloudFormation can resolve it.
    for (const name of named) expect(Object.keys(template.Resources)).toContain(name);
    const text = JSON.stringify(body);
    for (const metric of [
      'ReplicationLatency',
      'ObjectsReplicated',
      'BytesReplicated',
      'Skipped',
      'Failures',
    ]) {
      expect(text).toContain(metric);
    }
    expect(text).toContain('p99');
    expect(text).toContain('ApproximateNumberOfMessagesNotVisible');

    expect(template.Outputs.DashboardName?.Value).toEqual({ Ref: logicalId });
    expect(JSON.stringify(template.Outputs.DashboardUrl?.Value)).toContain(
      '#dashboards/dashboard/',
    );
    expect(template.Outputs).toMatchObject({
      EventsQueueUrl: { Value: { Ref: 'EventsQueue' } },
      EventsDeadLetterQueueUrl: { Value: { Ref: 'EventsDeadLetterQueue' } },
      TasksQueueUrl: { Value: { Ref: 'TasksQueue' } },
      TasksDeadLetterQueueUrl: { Value: { Ref: 'TasksDeadLetterQueue' } },
      LambdaRoleArn: { Value: { 'Fn::GetAtt': ['IamRoleLambdaExecution', 'Arn'] } },
    });
  });

  it("lets the functions' role redrive (receive and delete dead letters, send to the work queues) and no more on the queues", async () => {
    const { template } = await templateWith();
    const statements = statementsOf(template.Resources) as Record<string, unknown>[];
    const queue = (name: string) => `arn:aws:sqs:eu-west-1:111122223333:${name}`;
    const may = (action: string, resource: string) => allows(statements, { action, resource });
    for (const name of ['EventsDeadLetterQueue', 'TasksDeadLetterQueue']) {
      for (const action of [
        'sqs:ReceiveMessage',
        'sqs:DeleteMessage',
        'sqs:ChangeMessageVisibility',
        'sqs:GetQueueAttributes',
      ]) {
        expect(may(action, queue(name)), `${action} on ${name}`).toBe(true);
      }
    }
    for (const name of ['EventsQueue', 'TasksQueue']) {
      expect(may('sqs:SendMessage', queue(name)), name).toBe(true);
    }
    const administration = [
      'sqs:PurgeQueue',
      'sqs:DeleteQueue',
      'sqs:SetQueueAttributes',
      'sqs:StartMessageMoveTask',
    ];
    for (const name of [
      'EventsQueue',
      'TasksQueue',
      'EventsDeadLetterQueue',
      'TasksDeadLetterQueue',
    ]) {
      for (const action of administration)
        expect(may(action, queue(name)), `${action} on ${name}`).toBe(false);
    }
    for (const action of ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:SendMessage']) {
      expect(may(action, queue('SomeoneElsesQueue')), action).toBe(false);
    }
    // No SQS action on every resource.
    for (const statement of statements) {
      const actions = [statement.Action].flat().map(String);
      if (actions.some((action) => action.startsWith('sqs:'))) {
        expect([statement.Resource].flat()).not.toContain('*');
        expect(actions).not.toContain('sqs:*');
      }
    }
  });

  it("keeps the local mirror's wiring reader working with functions fed by no queue", async () => {
    const wiring = await readServerlessWiring(join(root, 'serverless.yml'));
    const byName = Object.fromEntries(wiring.functions.map((fn) => [fn.name, fn]));
    expect(byName.plan?.sqs?.queue).toBe('EventsQueue');
    expect(byName.copy?.sqs?.queue).toBe('TasksQueue');
    expect(byName.redrive).toMatchObject({
      module: 'redrive',
      timeoutSeconds: REDRIVE_TIMEOUT_SECONDS,
    });
    expect(byName.redrive?.sqs).toBeUndefined();
    expect(byName.reconcile?.sqs).toBeUndefined();
    // A schedule written out as an event is not a queue either.
    const dir = await mkdtemp(join(tmpdir(), 's3az-wiring-'));
    const file = join(dir, 'serverless.yml');
    const yaml = (await readFile(join(root, 'serverless.yml'), 'utf8')).replace(
      /events: \$\{self:custom\.generated\.reconcileEvents\}/,
      'events:\n      - schedule: { rate: ["rate(6 hours)"], input: {} }',
    );
    expect(yaml).toContain('- schedule: {');
    await writeFile(file, yaml);
    const scheduled = await readServerlessWiring(file);
    expect(scheduled.functions.find((fn) => fn.name === 'reconcile')).toMatchObject({
      module: 'reconcile',
      http: false,
    });
    expect(scheduled.functions.find((fn) => fn.name === 'reconcile')?.sqs).toBeUndefined();
  });

  it('refuses to package a configuration that does not validate, naming the rule and field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 's3az-bad-'));
    const config = join(dir, 'replication.yml');
    await writeFile(
      config,
      'rules:\n  - name: data\n    s3: { bucket: b-1 }\n    azure: { accountUrl: https://a.blob.core.windows.net, container: c }\n    direction: sideways\n',
    );
    const { result } = await packageWith(config);
    expect('failed' in result).toBe(true);
    expect(`${result.stdout}${result.stderr}`).toMatch(/data[\s\S]*direction/);
  });

  it('refuses to package eventGrid.auth mode none, which is for local use only, naming the field', async () => {
    const config = await configFile(
      'rules:\n  - name: data\n    s3: { bucket: b-1 }\n    azure: { accountUrl: https://a.blob.core.windows.net, container: data }\neventGrid:\n  auth: { mode: none, allowUnauthenticated: true }\n',
    );
    const { result } = await packageWith(config);
    expect('failed' in result).toBe(true);
    expect(`${result.stdout}${result.stderr}`).toMatch(
      /eventGrid\.auth\.mode[\s\S]*local use only/,
    );
  });

  it("packages KMS grants for a key alias, and the owner of another account's bucket", async () => {
    const config = await configFile(
      [
        'rules:',
        '  - name: data',
        '    s3: { bucket: b-1, kmsKeyId: alias/replicas, bucketOwner: "444455556666" }',
        '    azure: { accountUrl: https://a.blob.core.windows.net, container: data }',
        '',
      ].join('\n'),
    );
    const { out, result } = await packageWith(config);
    expect('failed' in result ? result.stderr : '').toBe('');
    const template = JSON.parse(
      await readFile(join(out, 'cloudformation-template-update-stack.json'), 'utf8'),
    ) as { Resources: Record<string, Resource> };
    const resources = template.Resources;
    // A policy cannot name a key by its alias; the key is matched by the alias it carries.
    expect(statementsOf(resources)).toContainEqual({
      Effect: 'Allow',
      Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
      Resource: [
        {
          'Fn::Join': [
            '',
            [
              'arn:',
              { Ref: 'AWS::Partition' },
              ':kms:',
              { Ref: 'AWS::Region' },
              ':',
              { Ref: 'AWS::AccountId' },
              ':key/*',
            ],
          ],
        },
      ],
      Condition: { 'ForAnyValue:StringEquals': { 'kms:ResourceAliases': ['alias/replicas'] } },
    });
    expect(resources.EventsQueuePolicy?.Properties).toHaveProperty(
      ['PolicyDocument', 'Statement', 0, 'Condition', 'StringEquals'],
      { 'aws:SourceAccount': '444455556666' },
    );
  });
});

/** A function's package, extracted once into a folder of its own (as Lambda unpacks it). */
const unpacked = new Map<string, Promise<{ dir: string; files: string[] }>>();
function unpackedFunction(name: string) {
  let run = unpacked.get(name);
  if (!run) {
    run = (async () => {
      const { out } = await templateWith();
      const dir = await mkdtemp(join(tmpdir(), `s3az-unpacked-${name}-`));
      return { dir, files: await extractZip(await readFile(join(out, `${name}.zip`)), dir) };
    })();
    unpacked.set(name, run);
  }
  return run;
}

afterAll(async () => {
  for (const run of unpacked.values()) {
    const { dir } = await run.catch(() => ({ dir: undefined }));
    if (dir) await rm(dir, { recursive: true, force: true });
  }
});

/** Runs an ES module script with Node in `dir`, as Lambda does (NODE_OPTIONS from serverless.yml). */
async function nodeIn(dir: string, script: string, env: Record<string, string> = {}) {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', script],
    {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        NODE_OPTIONS: '--enable-source-maps',
        LAMBDA_TASK_ROOT: dir,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        POWERTOOLS_LOG_LEVEL: 'SILENT',
        POWERTOOLS_METRICS_DISABLED: 'true',
        ...env,
      },
    },
  );
  return stdout;
}

/** The files a function's source maps were made from (its code, chunks loaded on demand included). */
async function sourcesOf(name: string): Promise<string[]> {
  const { dir, files } = await unpackedFunction(name);
  const sources: string[] = [];
  for (const file of files.filter((path) => path.endsWith('.map'))) {
    const map = JSON.parse(await readFile(join(dir, file), 'utf8')) as { sources: string[] };
    sources.push(...map.sources);
  }
  return sources;
}

describe('File: serverless.yml (each function packaged on its own)', () => {
  it(`packages each function alone: its bundle, its chunks, their source maps and the configuration, under ${ZIP_BUDGET_BYTES / 1e6} MB`, async () => {
    const { out, template } = await templateWith();
    for (const name of FUNCTIONS) {
      const logicalId = `${name[0]?.toUpperCase()}${name.slice(1)}LambdaFunction`;
      const code = template.Resources[logicalId]?.Properties.Code as { S3Key: string };
      expect(posix.basename(code.S3Key), name).toBe(`${name}.zip`);
      const zip = await readFile(join(out, `${name}.zip`));
      expect(zip.length, `${name}.zip: ${zip.length} bytes`).toBeLessThan(ZIP_BUDGET_BYTES);
      const files = readZip(zip).map((entry) => entry.name);
      expect(files, name).toContain(`dist/handlers/${name}.mjs`);
      expect(files, name).toContain(fixture);
      for (const file of files) {
        if (file === fixture) continue;
        // Nothing of another function's.
        expect(
          file === `dist/handlers/${name}.mjs` ||
            file === `dist/handlers/${name}.mjs.map` ||
            file.startsWith(`dist/handlers/${name}/`),
          `${name}.zip holds ${file}`,
        ).toBe(true);
        // Stack traces name the sources' files and lines (NODE_OPTIONS=--enable-source-maps).
        if (file.endsWith('.mjs')) expect(files, name).toContain(`${file}.map`);
      }
    }
    const functions = ofType(template, 'AWS::Lambda::Function');
    for (const [logicalId, fn] of functions) {
      expect(fn.Properties.Environment, logicalId).toHaveProperty(
        ['Variables', 'NODE_OPTIONS'],
        '--enable-source-maps',
      );
    }
  });

  it('leaves the Azure storage SDK, @azure/identity and the S3 client out of the webhook', async () => {
    const sdk = /node_modules\/@azure\/(storage-blob|identity|msal-node)\//;
    const webhook = await sourcesOf('eventgrid');
    expect(webhook.length).toBeGreaterThan(0);
    expect(webhook.filter((source) => sdk.test(source))).toEqual([]);
    expect(webhook.filter((source) => source.includes('node_modules/@aws-sdk/client-s3/'))).toEqual(
      [],
    );
    // The check can fail: the copy function, which uses a rule's stores, holds both.
    const copy = await sourcesOf('copy');
    expect(copy.some((source) => source.includes('node_modules/@azure/storage-blob/'))).toBe(true);
    expect(copy.some((source) => source.includes('node_modules/@azure/identity/'))).toBe(true);
  });

  it('loads every function from the files of its own package: the handler and each chunk it may import', async () => {
    for (const name of FUNCTIONS) {
      const { dir, files } = await unpackedFunction(name);
      const modules = files.filter((file) => file.endsWith('.mjs'));
      // Every module another one names (import ... from, import(...)) is in the package.
      for (const file of modules) {
        const text = await readFile(join(dir, file), 'utf8');
        for (const [, specifier] of text.matchAll(/(?:from|import)\s*\(?\s*"(\.\.?\/[^"]+)"/g)) {
          const target = posix.normalize(posix.join(posix.dirname(file), specifier ?? ''));
          expect(files, `${file} imports ${specifier}`).toContain(target);
        }
      }
      // Each loads; a module left out of this function's bundle says so when loaded.
      const results = JSON.parse(
        await nodeIn(
          dir,
          `const results = {};
          const { handler } = await import(${JSON.stringify(pathToFileURL(join(dir, `dist/handlers/${name}.mjs`)).href)});
          results.handler = typeof handler;
          for (const file of ${JSON.stringify(modules)}) {
            try { await import(new URL(file, ${JSON.stringify(pathToFileURL(`${dir}/`).href)}).href); results[file] = 'loaded'; }
            catch (error) { results[file] = String(error.message); }
          }
          process.stdout.write(JSON.stringify(results));`,
        ),
      ) as Record<string, string>;
      expect(results.handler, name).toBe('function');
      for (const file of modules) {
        expect(results[file], `${name}: ${file}`).toMatch(/^loaded$|is packaged without/);
      }
    }
  });

  it('answers the Event Grid handshake, and says which field of a bad configuration is wrong, from the packaged webhook alone', async () => {
    const { dir } = await unpackedFunction('eventgrid');
    const config = await configFile(
      [
        'rules:',
        '  - name: data',
        '    s3: { bucket: b-1 }',
        '    azure: { accountUrl: https://a.blob.core.windows.net, container: data }',
        'eventGrid:',
        '  auth: { mode: shared-secret, secretEnv: HOOK }',
        '',
      ].join('\n'),
    );
    const handshake = (configPath: string) =>
      nodeIn(
        dir,
        `const { handler } = await import(${JSON.stringify(pathToFileURL(join(dir, 'dist/handlers/eventgrid.mjs')).href)});
        const event = {
          version: '2.0',
          headers: { 'x-s3az-secret': 'the-secret' },
          requestContext: { http: { method: 'POST' } },
          body: JSON.stringify([{ id: '1', topic: '/subscriptions/x', subject: '',
            eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
            eventTime: new Date().toISOString(), data: { validationCode: 'C1' }, dataVersion: '2' }]),
          isBase64Encoded: false,
        };
        const context = { functionName: 'eventgrid', awsRequestId: '1', getRemainingTimeInMillis: () => 29000 };
        try { process.stdout.write(JSON.stringify(await handler(event, context))); }
        catch (error) { process.stdout.write(JSON.stringify({ error: error.message, stack: error.stack })); }`,
        { S3AZ_CONFIG: configPath, HOOK: 'the-secret' },
      ).then((stdout) => JSON.parse(stdout) as Record<string, unknown>);
    expect(await handshake(config)).toMatchObject({
      statusCode: 200,
      body: JSON.stringify({ validationResponse: 'C1' }),
    });
    const bad = await configFile(
      'rules:\n  - name: data\n    s3: { bucket: b-1 }\n    azure: { accountUrl: https://a.blob.core.windows.net, container: data }\n    direction: sideways\n',
    );
    const refused = await handshake(bad);
    expect(String(refused.error)).toMatch(/data[\s\S]*direction/);
    // The stack trace names the sources (the source maps are read).
    expect(String(refused.stack)).toMatch(/src\/config\/load\.ts:\d+/);
  });
});
