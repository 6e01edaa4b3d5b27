import { GetWebIdentityTokenCommand, type STSClient } from '@aws-sdk/client-sts';
import { ClientAssertionCredential, ClientSecretCredential } from '@azure/identity';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import type { ReplicationRule } from '../config/schema.ts';
import { PermanentError, UsageError } from '../errors.ts';
import {
  accountNameOf,
  blobServiceWithSas,
  type Environment,
  makeBlobServiceClient,
  parseConnectionString,
  pipelineOptions,
} from '../stores/clients.ts';
import type { SecretSource } from './secrets.ts';

/** Audience Azure expects of a federated token (workload identity federation). */
const AZURE_TOKEN_EXCHANGE_AUDIENCE = 'api://AzureADTokenExchange';

export interface AzureCredentialSources {
  env: Environment;
  secrets: SecretSource;
  /** STS, for AWS outbound identity federation (`sts:GetWebIdentityToken`). */
  sts: () => STSClient;
}

/** A rule's Azure client, and the secret's value it was built from (when from a secret). */
export interface AzureService {
  service: BlobServiceClient;
  secret?: string;
}

/**
 * The BlobServiceClient for a rule's account, with the credential the rule names:
 *
 * - `secretArn`: a Secrets Manager secret holding a connection string, an account key, a SAS
 *   token, or a service principal as JSON `{"tenantId","clientId","clientSecret"}`;
 * - `workloadIdentity`: no secret; an AWS-signed web identity token (STS GetWebIdentityToken)
 *   is exchanged for an Entra ID token of the app registration (federated credential);
 * - `connectionStringEnv`: a connection string from that environment variable (local use);
 * - none: the environment's Azure credential (see `makeBlobServiceClient`).
 */
export async function blobServiceFor(
  rule: ReplicationRule,
  sources: AzureCredentialSources,
): Promise<AzureService> {
  const url = rule.azure.accountUrl.replace(/\/+$/, '');
  const credential = rule.azure.credential;
  if (!credential) return { service: await makeBlobServiceClient(url, sources.env) };
  if ('connectionStringEnv' in credential) {
    const text = sources.env[credential.connectionStringEnv];
    if (!text) {
      throw new UsageError(
        `rule "${rule.name}": azure.credential.connectionStringEnv names ${credential.connectionStringEnv}, which is not set`,
      );
    }
    return {
      service: serviceFromSecret(
        url,
        text,
        `environment variable ${credential.connectionStringEnv}`,
      ),
    };
  }
  if ('secretArn' in credential) {
    const secret = await sources.secrets.get(credential.secretArn);
    return { service: serviceFromSecret(url, secret, `secret ${credential.secretArn}`), secret };
  }
  const { tenantId, clientId } = credential.workloadIdentity;
  const token = new ClientAssertionCredential(tenantId, clientId, async () => {
    const out = await sources.sts().send(
      new GetWebIdentityTokenCommand({
        Audience: [AZURE_TOKEN_EXCHANGE_AUDIENCE],
        SigningAlgorithm: 'RS256',
        DurationSeconds: 300,
      }),
    );
    if (!out.WebIdentityToken)
      throw new PermanentError('STS GetWebIdentityToken returned no token');
    return out.WebIdentityToken;
  });
  return { service: new BlobServiceClient(url, token, pipelineOptions) };
}

/** Builds the client from a secret's text. Errors say which secret, never what it holds. */
export function serviceFromSecret(url: string, text: string, where: string): BlobServiceClient {
  const value = text.trim();
  if (value.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      throw new UsageError(`the ${where} looks like JSON but does not parse`);
    }
    const principal = parsed as Record<string, unknown>;
    if (
      typeof principal.tenantId === 'string' &&
      typeof principal.clientId === 'string' &&
      typeof principal.clientSecret === 'string'
    ) {
      return new BlobServiceClient(
        url,
        new ClientSecretCredential(principal.tenantId, principal.clientId, principal.clientSecret),
        pipelineOptions,
      );
    }
    throw new UsageError(
      `the ${where} is JSON without "tenantId", "clientId" and "clientSecret" (a service principal)`,
    );
  }
  if (/(^|;)\s*(AccountKey|SharedAccessSignature)=/i.test(value)) {
    const parts = parseConnectionString(value);
    const sas = parts.get('sharedaccesssignature');
    if (sas) return blobServiceWithSas(url, sas);
    const account = parts.get('accountname') ?? accountNameOf(url);
    return new BlobServiceClient(
      url,
      sharedKey(account, parts.get('accountkey') ?? '', where),
      pipelineOptions,
    );
  }
  if (/(^|[?&])sig=/.test(value)) return blobServiceWithSas(url, value);
  return new BlobServiceClient(url, sharedKey(accountNameOf(url), value, where), pipelineOptions);
}

function sharedKey(account: string, key: string, where: string): StorageSharedKeyCredential {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key)) {
    throw new UsageError(
      `the ${where} is not a connection string, account key, SAS token or service principal`,
    );
  }
  return new StorageSharedKeyCredential(account, key);
}
