import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import serverlessVariables, {
  eventsQueuePolicy,
  iamStatements,
} from '../../src/deploy/serverless-vars.ts';

const base = {
  s3: { bucket: 'bucket-a', prefix: 'in/' },
  azure: { accountUrl: 'https://acct.blob.core.windows.net', container: 'data' },
};

/*
 * A small IAM evaluator, enough for the statements generated here: Allow/Deny, Action and
 * Resource with `*` and `?` wildcards, and the condition operators the generator uses (with
 * `IfExists` and the `ForAnyValue:`/`ForAllValues:` qualifiers). Any other operator throws, so
 * a new condition is never waved through. CloudFormation's pseudo parameters are given the
 * values of a stack in account 111122223333, eu-west-1.
 */
type Statement = Record<string, unknown>;
type RequestContext = {
  action: string;
  resource: string;
  keys?: Record<string, string | string[]>;
};

const stack: Record<string, string> = {
  'AWS::AccountId': '111122223333',
  'AWS::Region': 'eu-west-1',
  'AWS::Partition': 'aws',
};

function resolve(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(resolve);
  if (typeof value !== 'object' || value === null) return value;
  const object = value as Record<string, unknown>;
  if (typeof object.Ref === 'string') {
    const pseudo = stack[object.Ref];
    if (pseudo === undefined) throw new Error(`unknown Ref ${object.Ref}`);
    return pseudo;
  }
  if (Array.isArray(object['Fn::Join'])) {
    const [separator, parts] = object['Fn::Join'] as [string, unknown[]];
    return (resolve(parts) as string[]).join(separator);
  }
  if (Array.isArray(object['Fn::GetAtt'])) {
    const [name] = object['Fn::GetAtt'] as [string];
    return `arn:aws:sqs:eu-west-1:111122223333:${name}`;
  }
  return Object.fromEntries(Object.entries(object).map(([key, entry]) => [key, resolve(entry)]));
}

function list(value: unknown): string[] {
  return (Array.isArray(value) ? value : [value]).map(String);
}

function like(pattern: string, value: string): boolean {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${source}$`).test(value);
}

function conditionHolds(condition: unknown, keys: Record<string, string | string[]>): boolean {
  if (condition === undefined) return true;
  return Object.entries(condition as Record<string, Record<string, unknown>>).every(
    ([operator, entries]) => {
      const match =
        /^(?:(ForAnyValue|ForAllValues):)?(StringEquals|StringLike|ArnLike|ArnEquals)(IfExists)?$/.exec(
          operator,
        );
      if (!match) throw new Error(`the test evaluator does not know ${operator}`);
      const [, qualifier, base, ifExists] = match;
      const compare = (expected: string, actual: string) =>
        base === 'StringEquals' || base === 'ArnEquals'
          ? expected === actual
          : like(expected, actual);
      return Object.entries(entries).every(([key, expected]) => {
        const actual = keys[key];
        if (actual === undefined) return ifExists !== undefined || qualifier === 'ForAllValues';
        const values = list(actual);
        const matches = (value: string) => list(expected).some((item) => compare(item, value));
        if (qualifier === 'ForAllValues') return values.every(matches);
        if (qualifier === 'ForAnyValue') return values.some(matches);
        if (values.length !== 1) throw new Error(`${key} is multivalued: it needs a set operator`);
        return matches(values[0] as string);
      });
    },
  );
}

function applies(statement: Statement, request: RequestContext): boolean {
  return (
    list(statement.Action).some((action) => like(action, request.action)) &&
    list(statement.Resource).some((resource) => like(resource, request.resource)) &&
    conditionHolds(statement.Condition, request.keys ?? {})
  );
}

/** Whether the statements allow the request: some Allow applies and no Deny does. */
function allows(statements: Statement[], request: RequestContext): boolean {
  const resolved = resolve(statements) as Statement[];
  const applying = resolved.filter((statement) => applies(statement, request));
  return (
    applying.some((statement) => statement.Effect === 'Allow') &&
    !applying.some((statement) => statement.Effect === 'Deny')
  );
}

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
    return serverlessVariables({ resolveConfigurationProperty: async () => file });
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
