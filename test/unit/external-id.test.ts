import { AssumeRoleCommand, type STSClient } from '@aws-sdk/client-sts';
import { describe, expect, it } from 'vitest';
import { assumedRoleCredentials } from '../../src/auth/aws-role.ts';
import { ruleSchema } from '../../src/config/schema.ts';

const ROLE_ARN = 'arn:aws:iam::222222222222:role/replicator';

/** A stubbed STS client at the SDK boundary: records each AssumeRole input. */
function stubbedSts() {
  const inputs: unknown[] = [];
  const sts = {
    send: async (command: unknown) => {
      if (!(command instanceof AssumeRoleCommand)) throw new Error('unexpected command');
      inputs.push(command.input);
      return {
        Credentials: {
          AccessKeyId: 'AKIA',
          SecretAccessKey: 'secret',
          SessionToken: 'token',
          Expiration: new Date(Date.now() + 3600_000),
        },
      };
    },
  } as unknown as STSClient;
  return { sts, inputs };
}

const rule = (s3: Record<string, unknown>) => ({
  name: 'r',
  s3: { bucket: 'bucket-a', roleArn: ROLE_ARN, ...s3 },
  azure: { accountUrl: 'https://account.blob.core.windows.net', container: 'container-a' },
});

describe('Function: assumedRoleCredentials', () => {
  it('passes the external id to AssumeRole', async () => {
    // Prepare
    const { sts, inputs } = stubbedSts();

    // Act
    await assumedRoleCredentials(sts, ROLE_ARN, 'session', 'ext-id:123/abc')();

    // Assess
    expect(inputs).toEqual([
      {
        RoleArn: ROLE_ARN,
        RoleSessionName: 'session',
        DurationSeconds: 3600,
        ExternalId: 'ext-id:123/abc',
      },
    ]);
  });

  it('sends no external id when none is configured', async () => {
    const { sts, inputs } = stubbedSts();
    await assumedRoleCredentials(sts, ROLE_ARN, 'session')();
    expect(inputs[0]).not.toHaveProperty('ExternalId');
  });
});

describe('Schema: rules[].s3.externalId', () => {
  it.each([
    ['ab', true],
    ['Ab0_+=,.@:/-', true],
    ['x'.repeat(1224), true],
    ['a', false],
    ['x'.repeat(1225), false],
    ['has space', false],
    ['semi;colon', false],
  ])('case %#', (externalId, accepted) => {
    expect(ruleSchema.safeParse(rule({ externalId })).success).toBe(accepted);
  });

  it('is refused without roleArn', () => {
    const parsed = ruleSchema.safeParse({
      ...rule({ externalId: 'abc' }),
      s3: { bucket: 'bucket-a', externalId: 'abc' },
    });
    expect(parsed.success).toBe(false);
  });
});
