import type { STSClient } from '@aws-sdk/client-sts';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@aws-sdk/types';
import { PermanentError } from '../errors.ts';
import { awsCallError } from './aws-call-error.ts';

// Credentials are renewed this long before they expire, so no request carries stale ones.
const RENEW_MILLISECONDS = 5 * 60 * 1000;

/** The session name used when none is configured (`s3az copy`, `s3az local`). */
export const DEFAULT_ROLE_SESSION_NAME = 's3-azure-replicator';

/**
 * Credentials of a role assumed for a rule's bucket (cross-account access), renewed before
 * they expire. The session name appears in S3 events as the writer (`AWS:<role id>:<session>`),
 * so each stack uses its own (`S3AZ_ROLE_SESSION_NAME`) and knows its own writes by it.
 * `externalId` is passed when the role's trust policy requires one (`sts:ExternalId`).
 */
export function assumedRoleCredentials(
  sts: STSClient,
  roleArn: string,
  sessionName = DEFAULT_ROLE_SESSION_NAME,
  externalId?: string,
): AwsCredentialIdentityProvider {
  let current: Promise<AwsCredentialIdentity> | undefined;
  let expiresAt = 0;
  return async () => {
    if (!current || Date.now() > expiresAt - RENEW_MILLISECONDS) {
      current = assume(sts, roleArn, sessionName, externalId);
      current.catch(() => {
        current = undefined;
      });
      const credentials = await current;
      expiresAt = credentials.expiration?.getTime() ?? Date.now() + 15 * 60 * 1000;
    }
    return current;
  };
}

async function assume(
  sts: STSClient,
  roleArn: string,
  sessionName: string,
  externalId: string | undefined,
): Promise<AwsCredentialIdentity> {
  try {
    // The STS SDK is loaded (the client is built) only by functions with a rule to assume.
    const { AssumeRoleCommand } = await import('@aws-sdk/client-sts');
    const out = await sts.send(
      new AssumeRoleCommand({
        RoleArn: roleArn,
        RoleSessionName: sessionName,
        DurationSeconds: 3600,
        ...(externalId !== undefined && { ExternalId: externalId }),
      }),
    );
    const c = out.Credentials;
    if (!c?.AccessKeyId || !c.SecretAccessKey)
      throw new PermanentError(`assuming ${roleArn} returned no credentials`);
    return {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      ...(c.SessionToken && { sessionToken: c.SessionToken }),
      ...(c.Expiration && { expiration: c.Expiration }),
    };
  } catch (error) {
    throw awsCallError(error, `assuming the role ${roleArn}`);
  }
}
