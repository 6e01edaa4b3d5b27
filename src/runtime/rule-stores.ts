import type { STSClient } from '@aws-sdk/client-sts';
import { assumedRoleCredentials } from '../auth/aws-role.ts';
import { blobServiceFor } from '../auth/azure-service.ts';
import type { SecretSource } from '../auth/secrets.ts';
import type { ReplicationRule } from '../config/schema.ts';
import { AzureBlobObjectStore } from '../stores/azure-blob.ts';
import { awsClientSettings, type Environment, makeS3Client } from '../stores/clients.ts';
import { S3ObjectStore } from '../stores/s3.ts';
import type { RuleStores } from './runtime.ts';

/** What a rule's stores are built from. */
export interface RuleStoreSources {
  env: Environment;
  secrets: SecretSource;
  /** The session name of an assumed role (`S3AZ_ROLE_SESSION_NAME`). */
  roleSessionName: string;
}

/**
 * What the runtime builds each rule's stores with: `buildRuleStores` with one STS client for
 * all rules, built (and its SDK loaded) on first use: for a rule's roleArn or workload identity.
 */
export function ruleStoreBuilder(
  sources: RuleStoreSources,
): (rule: ReplicationRule) => Promise<RuleStores> {
  let sts: Promise<STSClient> | undefined;
  const stsClient = (): Promise<STSClient> => {
    if (!sts) {
      sts = import('@aws-sdk/client-sts').then(
        ({ STSClient }) => new STSClient(awsClientSettings(sources.env, 'STS')),
      );
      sts.catch(() => {
        sts = undefined;
      });
    }
    return sts;
  };
  return (rule) => buildRuleStores(rule, { ...sources, sts: stsClient });
}

/**
 * Builds a rule's stores: the part of the runtime that loads the S3 and Azure SDKs. The
 * runtime imports this module on the first `storesOf`, so that functions that never touch a
 * store (the webhook, redrive), and plan batches that need none, do not load them; the copy
 * function, which always does, imports it up front (its cold start loads it before the first
 * task rather than during it).
 */
export async function buildRuleStores(
  rule: ReplicationRule,
  sources: RuleStoreSources & { sts: () => Promise<STSClient> },
): Promise<RuleStores> {
  const { env } = sources;
  const roleArn = rule.s3.roleArn;
  const s3Client = makeS3Client(env, {
    ...(rule.s3.region !== undefined && { region: rule.s3.region }),
    ...(roleArn !== undefined && {
      credentials: assumedRoleCredentials(
        await sources.sts(),
        roleArn,
        sources.roleSessionName,
        rule.s3.externalId,
      ),
    }),
  });
  const { service, secret } = await blobServiceFor(rule, sources);
  return {
    ...(secret !== undefined && { azureSecret: secret }),
    s3: new S3ObjectStore(s3Client, rule.s3.bucket, {
      ...(rule.s3.kmsKeyId !== undefined && { kmsKeyId: rule.s3.kmsKeyId }),
    }),
    // Every request through `service` now carries the replicator's client request id,
    // so nothing but replica writes (and deletes of replicas) may use it.
    azure: new AzureBlobObjectStore(service.getContainerClient(rule.azure.container), {
      replicaWrites: true,
      ...(rule.azure.encryptionScope !== undefined && {
        encryptionScope: rule.azure.encryptionScope,
      }),
    }),
  };
}
