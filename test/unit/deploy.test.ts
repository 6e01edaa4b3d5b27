import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import { eventsQueuePolicy, iamStatements } from '../../src/deploy/serverless-vars.ts';

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
