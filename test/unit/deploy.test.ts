import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { validateConfig } from '../../src/config/load.ts';
import serverlessVariables, {
  alarmSettings,
  DEFAULT_TUNING,
  dashboardBody,
  eventsQueuePolicy,
  FUNCTIONS,
  iamStatements,
  reconcileEvents,
  timingVariables,
  tuning,
} from '../../src/deploy/serverless-vars.ts';
import { PLAN_TIMEOUT_SECONDS } from '../../src/queue/timing.ts';
import { allows, type Statement } from '../support/iam.ts';

const base = {
  s3: { bucket: 'bucket-a', prefix: 'in/' },
  azure: { accountUrl: 'https://acct.blob.core.windows.net', container: 'data' },
};

describe('Function: iamStatements', () => {
  it("grants object actions only under each rule's bucket and prefix", () => {
    const statements = JSON.stringify(
      iamStatements(validateConfig({ rules: [{ name: 'a', ...base }] })),
    );
    expect(statements).toContain('"arn:aws:s3:::bucket-a/in/*"');
    expect(statements).not.toContain('"arn:aws:s3:::*"');
    expect(statements).not.toContain('secretsmanager');
  });

  it('grants only sts:AssumeRole for a rule with a role, and what its key, secret and federation need', () => {
    const config = validateConfig({
      rules: [
        {
          name: 'a',
          s3: {
            bucket: 'bucket-b',
            roleArn: 'arn:aws:iam::2:role/x',
            kmsKeyId: 'arn:aws:kms:us-east-1:2:key/k',
          },
          azure: {
            ...base.azure,
            credential: { workloadIdentity: { tenantId: 't', clientId: 'c' } },
          },
        },
      ],
      eventGrid: {
        auth: { mode: 'shared-secret', secretArn: 'arn:aws:secretsmanager:us-east-1:2:secret:h' },
      },
    });
    const statements = iamStatements(config);
    const actions = statements.flatMap((statement) => statement.Action as string[]);
    expect(actions).toContain('sts:AssumeRole');
    expect(actions).toContain('sts:GetWebIdentityToken');
    expect(actions).toContain('kms:GenerateDataKey');
    expect(actions).not.toContain('s3:GetObject');
    expect(JSON.stringify(statements)).toContain('arn:aws:secretsmanager:us-east-1:2:secret:h');
  });

  it('lets the functions request only the web identity token Azure takes (audience, lifetime, algorithm)', () => {
    const statements = iamStatements(
      validateConfig({
        rules: [
          {
            name: 'a',
            ...base,
            azure: {
              ...base.azure,
              credential: { workloadIdentity: { tenantId: 't', clientId: 'c' } },
            },
          },
        ],
      }),
    );
    const token = (keys: Record<string, string | string[]>) =>
      allows(statements, { action: 'sts:GetWebIdentityToken', resource: '*', keys });
    const asRequested = {
      'sts:IdentityTokenAudience': ['api://AzureADTokenExchange'],
      'sts:DurationSeconds': '300',
      'sts:SigningAlgorithm': 'RS256',
    };
    expect(token(asRequested)).toBe(true);
    expect(
      token({ ...asRequested, 'sts:IdentityTokenAudience': ['https://api.example.com'] }),
    ).toBe(false);
    expect(
      token({
        ...asRequested,
        'sts:IdentityTokenAudience': ['api://AzureADTokenExchange', 'other'],
      }),
    ).toBe(false);
    expect(token({ ...asRequested, 'sts:DurationSeconds': '3600' })).toBe(false);
    expect(token({ ...asRequested, 'sts:SigningAlgorithm': 'ES384' })).toBe(false);
  });
});

describe('Function: iamStatements (evaluated)', () => {
  const statements = iamStatements(validateConfig({ rules: [{ name: 'a', ...base }] }));

  it('lets HeadObject of a missing key answer 404: s3:ListBucket on the bucket with no s3:prefix', () => {
    // S3 checks s3:ListBucket on the bucket, with no s3:prefix in the request, to decide
    // between 404 and 403 for a missing key.
    expect(allows(statements, { action: 's3:ListBucket', resource: 'arn:aws:s3:::bucket-a' })).toBe(
      true,
    );
    // Whether that check carries an empty s3:prefix instead is not documented: allowed too.
    expect(
      allows(statements, {
        action: 's3:ListBucket',
        resource: 'arn:aws:s3:::bucket-a',
        keys: { 's3:prefix': '' },
      }),
    ).toBe(true);
    expect(
      allows(statements, { action: 's3:GetObject', resource: 'arn:aws:s3:::bucket-a/in/missing' }),
    ).toBe(true);
  });

  it("lists only under a rule's prefix when the request names a prefix, and no other bucket", () => {
    const listing = (bucket: string, prefix: string) =>
      allows(statements, {
        action: 's3:ListBucket',
        resource: `arn:aws:s3:::${bucket}`,
        keys: { 's3:prefix': prefix },
      });
    expect(listing('bucket-a', 'in/')).toBe(true);
    expect(listing('bucket-a', 'in/deeper/')).toBe(true);
    expect(listing('bucket-a', 'private/')).toBe(false);
    expect(listing('bucket-b', 'in/')).toBe(false);
    expect(allows(statements, { action: 's3:ListBucket', resource: 'arn:aws:s3:::bucket-b' })).toBe(
      false,
    );
    expect(
      allows(statements, { action: 's3:GetObject', resource: 'arn:aws:s3:::bucket-a/private/x' }),
    ).toBe(false);
  });

  it('grants KMS on a key named by alias, alias ARN or bare key id, and on no other key', () => {
    const rule = (name: string, bucket: string, s3: Record<string, string>) => ({
      ...base,
      name,
      s3: { bucket, ...s3 },
      azure: { ...base.azure, container: `c-${name}` },
    });
    const withKeys = iamStatements(
      validateConfig({
        rules: [
          rule('alias', 'bucket-1', { kmsKeyId: 'alias/replicas' }),
          rule('alias-arn', 'bucket-2', {
            kmsKeyId: 'arn:aws:kms:us-west-2:444455556666:alias/theirs',
          }),
          rule('key-id', 'bucket-3', {
            kmsKeyId: '1234abcd-12ab-34cd-56ef-1234567890ab',
            region: 'eu-central-1',
          }),
          rule('key-arn', 'bucket-4', { kmsKeyId: 'arn:aws:kms:eu-west-1:111122223333:key/k' }),
        ],
      }),
    );
    const kms = (action: string, resource: string, aliases: string[] = []) =>
      allows(withKeys, { action, resource, keys: { 'kms:ResourceAliases': aliases } });
    for (const action of ['kms:GenerateDataKey', 'kms:Decrypt']) {
      // An alias names a key in the stack's account and Region (S3 resolves it there).
      expect(kms(action, 'arn:aws:kms:eu-west-1:111122223333:key/any', ['alias/replicas'])).toBe(
        true,
      );
      expect(kms(action, 'arn:aws:kms:eu-west-1:111122223333:key/any', ['alias/other'])).toBe(
        false,
      );
      expect(kms(action, 'arn:aws:kms:us-east-1:111122223333:key/any', ['alias/replicas'])).toBe(
        false,
      );
      expect(kms(action, 'arn:aws:kms:us-west-2:444455556666:key/any', ['alias/theirs'])).toBe(
        true,
      );
      expect(kms(action, 'arn:aws:kms:eu-west-1:111122223333:key/any', ['alias/theirs'])).toBe(
        false,
      );
      expect(
        kms(
          action,
          'arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
        ),
      ).toBe(true);
      expect(kms(action, 'arn:aws:kms:eu-west-1:111122223333:key/k')).toBe(true);
      expect(kms(action, 'arn:aws:kms:eu-west-1:111122223333:key/unnamed')).toBe(false);
    }
    expect(kms('kms:ScheduleKeyDeletion', 'arn:aws:kms:eu-west-1:111122223333:key/k')).toBe(false);
  });

  it("grants kms:Decrypt only on the keys of a bucket's objects and of secrets that the configuration names", () => {
    // Prepare
    const hookArn = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:hook';
    const keyArn = 'arn:aws:secretsmanager:us-east-2:444455556666:secret:azure';
    const statements = iamStatements(
      validateConfig({
        rules: [
          {
            ...base,
            name: 'read',
            s3: {
              ...base.s3,
              bucketOwner: '777788889999',
              readKmsKeyIds: [
                'arn:aws:kms:eu-west-1:111122223333:key/users',
                'alias/bucket-default',
              ],
            },
            azure: {
              ...base.azure,
              credential: { secretArn: keyArn, kmsKeyId: 'alias/secrets' },
            },
          },
        ],
        eventGrid: {
          auth: {
            mode: 'shared-secret',
            secretArn: hookArn,
            kmsKeyId: 'arn:aws:kms:eu-west-1:111122223333:key/hook',
          },
        },
      }),
    );
    const may = (action: string, resource: string, keys: Record<string, string | string[]> = {}) =>
      allows(statements, { action, resource, keys });
    const viaSecrets = (region: string, secret: string) => ({
      'kms:ViaService': `secretsmanager.${region}.amazonaws.com`,
      'kms:EncryptionContext:SecretARN': secret,
    });
    // Assess: the bucket's keys, for reading only; an alias in the bucket owner's account.
    expect(may('kms:Decrypt', 'arn:aws:kms:eu-west-1:111122223333:key/users')).toBe(true);
    expect(may('kms:GenerateDataKey', 'arn:aws:kms:eu-west-1:111122223333:key/users')).toBe(false);
    expect(
      may('kms:Decrypt', 'arn:aws:kms:eu-west-1:777788889999:key/any', {
        'kms:ResourceAliases': ['alias/bucket-default'],
      }),
    ).toBe(true);
    expect(
      may('kms:Decrypt', 'arn:aws:kms:eu-west-1:111122223333:key/any', {
        'kms:ResourceAliases': ['alias/bucket-default'],
      }),
    ).toBe(false);
    // A secret's key: through Secrets Manager, for that secret, in the secret's account.
    const hookKey = 'arn:aws:kms:eu-west-1:111122223333:key/hook';
    expect(may('kms:Decrypt', hookKey, viaSecrets('eu-west-1', hookArn))).toBe(true);
    expect(may('kms:Decrypt', hookKey)).toBe(false);
    expect(may('kms:Decrypt', hookKey, viaSecrets('eu-west-1', keyArn))).toBe(false);
    const secretKey = 'arn:aws:kms:us-east-2:444455556666:key/any';
    expect(
      may('kms:Decrypt', secretKey, {
        ...viaSecrets('us-east-2', keyArn),
        'kms:ResourceAliases': ['alias/secrets'],
      }),
    ).toBe(true);
    expect(
      may('kms:Decrypt', secretKey, {
        ...viaSecrets('us-east-2', keyArn),
        'kms:ResourceAliases': ['alias/other'],
      }),
    ).toBe(false);
  });
});

describe('Function: iamStatements (evaluated), the redrive function', () => {
  const statements = iamStatements(validateConfig({ rules: [{ name: 'a', ...base }] }));
  const queue = (name: string) => `arn:aws:sqs:eu-west-1:111122223333:${name}`;
  const may = (action: string, name: string) =>
    allows(statements, { action, resource: queue(name) });
  const deadLetterQueues = ['EventsDeadLetterQueue', 'TasksDeadLetterQueue'];
  const workQueues = ['EventsQueue', 'TasksQueue'];

  it('reads, holds and deletes dead letters, and sends them back to the work queues', () => {
    for (const name of deadLetterQueues) {
      for (const action of [
        'sqs:ReceiveMessage',
        'sqs:DeleteMessage',
        'sqs:ChangeMessageVisibility',
        'sqs:GetQueueAttributes',
      ]) {
        expect(may(action, name), `${action} on ${name}`).toBe(true);
      }
    }
    for (const name of workQueues) expect(may('sqs:SendMessage', name), name).toBe(true);
  });

  it('grants nothing more on the queues, and nothing on any other queue', () => {
    // Receive and delete on the work queues come from the framework, for the event sources.
    for (const name of workQueues) {
      expect(may('sqs:ReceiveMessage', name)).toBe(false);
      expect(may('sqs:DeleteMessage', name)).toBe(false);
    }
    for (const name of [...deadLetterQueues, ...workQueues]) {
      for (const action of [
        'sqs:PurgeQueue',
        'sqs:DeleteQueue',
        'sqs:SetQueueAttributes',
        'sqs:StartMessageMoveTask',
        'sqs:AddPermission',
        'sqs:TagQueue',
      ]) {
        expect(may(action, name), `${action} on ${name}`).toBe(false);
      }
    }
    for (const action of ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:SendMessage']) {
      expect(may(action, 'SomeOtherQueue')).toBe(false);
      expect(
        allows(statements, {
          action,
          resource: 'arn:aws:sqs:eu-west-1:999999999999:EventsDeadLetterQueue',
        }),
      ).toBe(false);
    }
    expect(may('sqs:ListQueues', '*')).toBe(false);
  });
});

describe('Function: reconcileEvents', () => {
  it('has no schedule without the parameter', () => {
    expect(reconcileEvents('')).toEqual([]);
    expect(reconcileEvents('  ')).toEqual([]);
    expect(reconcileEvents(undefined)).toEqual([]);
  });

  it.each(['rate(6 hours)', 'rate(1 day)', 'rate(30 minutes)', 'cron(0 3 * * ? *)'])(
    'schedules %s',
    (expression) => {
      expect(reconcileEvents(` ${expression} `)).toEqual([
        { schedule: expect.objectContaining({ rate: [expression], input: {} }) },
      ]);
    },
  );

  it.each(['6 hours', 'rate(1 hours)', 'rate(6 hour)', 'cron(0 3 * * ?)', 'every day'])(
    'refuses %s, naming the parameter',
    (expression) => {
      expect(() => reconcileEvents(expression)).toThrow(/reconcileSchedule.*schedule expression/);
    },
  );
});

describe('Function: alarmSettings', () => {
  it('notifies the SNS topic given, or no one', () => {
    const topic = 'arn:aws:sns:eu-west-1:111122223333:ops-alerts';
    expect(alarmSettings({ topicArn: '', eventsAgeSeconds: 900, tasksAgeSeconds: 3600 })).toEqual({
      actions: [],
      eventsAgeSeconds: 900,
      tasksAgeSeconds: 3600,
    });
    expect(
      alarmSettings({ topicArn: topic, eventsAgeSeconds: '600', tasksAgeSeconds: '7200' }),
    ).toEqual({ actions: [topic], eventsAgeSeconds: 600, tasksAgeSeconds: 7200 });
  });

  it('refuses what is not a topic ARN or a number of seconds, naming the parameter', () => {
    const ok = { eventsAgeSeconds: 900, tasksAgeSeconds: 3600 };
    expect(() =>
      alarmSettings({ ...ok, topicArn: 'arn:aws:sqs:eu-west-1:111122223333:queue' }),
    ).toThrow(/alarmTopicArn/);
    expect(() => alarmSettings({ ...ok, topicArn: 'ops-alerts' })).toThrow(/alarmTopicArn/);
    for (const bad of ['', 'soon', '-5', '0']) {
      expect(() => alarmSettings({ ...ok, eventsAgeSeconds: bad })).toThrow(
        /eventsAgeAlarmSeconds/,
      );
      expect(() => alarmSettings({ ...ok, tasksAgeSeconds: bad })).toThrow(/tasksAgeAlarmSeconds/);
    }
  });
});

describe('Function: timingVariables', () => {
  it('sizes the redrive and reconcile functions like the plan step', () => {
    expect(timingVariables()).toMatchObject({
      redriveTimeout: PLAN_TIMEOUT_SECONDS,
      reconcileTimeout: PLAN_TIMEOUT_SECONDS,
    });
  });
});

describe('Function: dashboardBody', () => {
  /** The body as CloudFormation would join it, for a stack whose names are known. */
  function joined(body: ReturnType<typeof dashboardBody>) {
    const [separator, parts] = body['Fn::Join'];
    const text = parts
      .map((part) => {
        if (typeof part === 'string') return part;
        const ref = (part as { Ref?: string }).Ref;
        if (ref === 'AWS::Region') return 'eu-west-1';
        if (ref) return `fn-${ref}`;
        const [name, attribute] = (part as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'];
        expect(attribute).toBe('QueueName');
        return `queue-${name}`;
      })
      .join(separator);
    return JSON.parse(text) as {
      widgets: {
        type: string;
        properties: { title: string; region: string; metrics: unknown[][] };
      }[];
    };
  }
  const body = joined(
    dashboardBody({
      namespace: 'S3AzureReplicator',
      service: 's3-azure-replicator',
      alarms: { eventsAgeSeconds: 900, tasksAgeSeconds: 3600 },
    }),
  );
  const widget = (title: RegExp) => {
    const found = body.widgets.find((candidate) => title.test(candidate.properties.title));
    if (!found) throw new Error(`no widget ${title}`);
    return found.properties;
  };

  it('is valid JSON once joined, every widget in the Region of the stack', () => {
    expect(body.widgets.length).toBeGreaterThanOrEqual(9);
    for (const { properties } of body.widgets) expect(properties.region).toBe('eu-west-1');
  });

  it('shows latency p50 and p99, objects and bytes per direction, skips and failures', () => {
    expect(widget(/latency/).metrics).toEqual([
      [
        'S3AzureReplicator',
        'ReplicationLatency',
        'service',
        's3-azure-replicator',
        { stat: 'p50', label: 'p50' },
      ],
      [
        'S3AzureReplicator',
        'ReplicationLatency',
        'service',
        's3-azure-replicator',
        { stat: 'p99', label: 'p99' },
      ],
    ]);
    for (const metric of ['ObjectsReplicated', 'BytesReplicated']) {
      const directions = body.widgets
        .flatMap((candidate) => candidate.properties.metrics)
        .filter((line) => line[1] === metric && line.includes('direction'))
        .map((line) => line[line.indexOf('direction') + 1]);
      expect(directions.sort()).toEqual(['azure-to-s3', 's3-to-azure']);
    }
    expect(JSON.stringify(widget(/Skipped by reason/).metrics)).toContain(
      `SEARCH('{S3AzureReplicator,reason,service} MetricName=\\"Skipped\\"`,
    );
    expect(JSON.stringify(widget(/Failures by class/).metrics)).toContain(
      '{S3AzureReplicator,class,service} MetricName=',
    );
  });

  it('shows the work queues visible and in flight, their age, and the dead letters', () => {
    const depth = JSON.stringify(widget(/visible and in flight/).metrics);
    for (const queue of ['queue-EventsQueue', 'queue-TasksQueue']) {
      expect(depth).toContain(`"ApproximateNumberOfMessagesVisible","QueueName","${queue}"`);
      expect(depth).toContain(`"ApproximateNumberOfMessagesNotVisible","QueueName","${queue}"`);
    }
    expect(JSON.stringify(widget(/age of the oldest/))).toMatch(/"value":900[\s\S]*"value":3600/);
    const deadLetters = JSON.stringify(widget(/Dead letters/).metrics);
    expect(deadLetters).toContain('queue-EventsDeadLetterQueue');
    expect(deadLetters).toContain('queue-TasksDeadLetterQueue');
  });

  it("shows every function's errors and throttles", () => {
    for (const [title, metric] of [
      [/errors/, 'Errors'],
      [/throttles/, 'Throttles'],
    ] as const) {
      const names = widget(title).metrics.map((line) => [line[1], line[3]]);
      expect(names).toEqual(
        FUNCTIONS.map((name) => [
          metric,
          `fn-${name.charAt(0).toUpperCase()}${name.slice(1)}LambdaFunction`,
        ]),
      );
    }
  });
});

describe('Function: eventsQueuePolicy (evaluated)', () => {
  const send = (policy: Statement, bucket: string, account: string | undefined) =>
    allows(policy.Statement as Statement[], {
      action: 'sqs:SendMessage',
      resource: 'arn:aws:sqs:eu-west-1:111122223333:EventsQueue',
      keys: {
        'aws:SourceArn': `arn:aws:s3:::${bucket}`,
        ...(account !== undefined && { 'aws:SourceAccount': account }),
      },
    });

  it("names the bucket owner's account (aws:SourceAccount) as well as the bucket (aws:SourceArn)", () => {
    const policy = eventsQueuePolicy(validateConfig({ rules: [{ name: 'a', ...base }] }));
    expect(send(policy, 'bucket-a', '111122223333')).toBe(true);
    // The same bucket name owned by another account (after a delete) is refused.
    expect(send(policy, 'bucket-a', '999999999999')).toBe(false);
    expect(send(policy, 'bucket-a', undefined)).toBe(false);
    expect(send(policy, 'bucket-b', '111122223333')).toBe(false);
  });

  it("takes a bucket's owner from s3.bucketOwner, else from its roleArn's account, else the stack's", () => {
    const policy = eventsQueuePolicy(
      validateConfig({
        rules: [
          { name: 'own', ...base },
          {
            ...base,
            name: 'role',
            s3: { bucket: 'bucket-r', roleArn: 'arn:aws:iam::222233334444:role/replicator' },
            azure: { ...base.azure, container: 'role' },
          },
          {
            ...base,
            name: 'owner',
            s3: { bucket: 'bucket-o', bucketOwner: '555566667777' },
            azure: { ...base.azure, container: 'owner' },
          },
        ],
      }),
    );
    expect(send(policy, 'bucket-a', '111122223333')).toBe(true);
    expect(send(policy, 'bucket-r', '222233334444')).toBe(true);
    expect(send(policy, 'bucket-r', '111122223333')).toBe(false);
    expect(send(policy, 'bucket-o', '555566667777')).toBe(true);
    expect(send(policy, 'bucket-a', '555566667777')).toBe(false);
    expect(send(policy, 'bucket-o', '111122223333')).toBe(false);
  });
});

describe('Function: serverlessVariables', () => {
  async function variablesFor(yaml: string) {
    const dir = await mkdtemp(join(tmpdir(), 's3az-vars-'));
    const file = join(dir, 'replication.yml');
    await writeFile(file, yaml);
    // serverless.yml's custom section, with the parameters' defaults.
    const custom: Record<string, unknown> = {
      configFile: file,
      reconcileSchedule: '',
      alarms: { topicArn: '', eventsAgeSeconds: 900, tasksAgeSeconds: 3600 },
    };
    return serverlessVariables({
      resolveConfigurationProperty: async ([section, ...path]) =>
        section === 'custom'
          ? path.reduce<unknown>((value, key) => (value as Record<string, unknown>)?.[key], custom)
          : undefined,
    });
  }
  const rule =
    'rules:\n  - name: data\n    s3: { bucket: bucket-1 }\n    azure: { accountUrl: https://a.blob.core.windows.net, container: data }\n';

  it('refuses eventGrid.auth.mode none, which is for local use only, naming the field', async () => {
    await expect(
      variablesFor(`${rule}eventGrid:\n  auth: { mode: none, allowUnauthenticated: true }\n`),
    ).rejects.toThrow(/eventGrid\.auth\.mode.*none.*local use only/);
  });

  it('makes the variables of a deployable configuration', async () => {
    const variables = await variablesFor(
      `${rule}eventGrid:\n  auth: { mode: shared-secret, secretArn: "arn:aws:secretsmanager:eu-west-1:1:secret:w" }\n`,
    );
    expect(variables.iamStatements.length).toBeGreaterThan(0);
    // No parameters: no reconcile schedule, alarms without actions.
    expect(variables.reconcileEvents).toEqual([]);
    expect(variables.alarms).toEqual({ actions: [], eventsAgeSeconds: 900, tasksAgeSeconds: 3600 });
    expect(variables.dashboardBody).toHaveProperty('Fn::Join');
  });
});

describe('Function: eventsQueuePolicy', () => {
  it('lets only S3, for the configured buckets, send to the events queue', () => {
    const policy = JSON.stringify(
      eventsQueuePolicy(validateConfig({ rules: [{ name: 'a', ...base }] })),
    );
    expect(policy).toContain('s3.amazonaws.com');
    expect(policy).toContain('"arn:aws:s3:::bucket-a"');
  });
});

describe('Constant: DEFAULT_TUNING', () => {
  it("is what serverless.yml's parameters default to (the local mirror runs with it)", async () => {
    const document = parse(
      await readFile(new URL('../../serverless.yml', import.meta.url), 'utf8'),
    ) as {
      params: { default: Record<string, unknown> };
    };
    for (const [name, value] of Object.entries(DEFAULT_TUNING)) {
      expect(document.params.default[name], name).toBe(value);
    }
  });

  it('names a parameter Lambda or CloudWatch would refuse', () => {
    expect(() => tuning({ copyMemory: 64 })).toThrow(
      /copyMemory: "64" is not a whole number from 128 to 10240/,
    );
    expect(() => tuning({ planConcurrency: 1 })).toThrow(/planConcurrency: "1"/);
    expect(() => tuning({ logRetentionDays: 10 })).toThrow(
      /logRetentionDays: "10" is not one of CloudWatch/,
    );
    expect(tuning({ copyMemory: '3008' }).copyMemory).toBe(3008);
  });
});
