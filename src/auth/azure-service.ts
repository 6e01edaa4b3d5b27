import type { STSClient } from '@aws-sdk/client-sts';
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
import { WEB_IDENTITY_TOKEN } from './web-identity.ts';

export interface AzureCredentialSources {
  env: Environment;
  secrets: SecretSource;
  /**
   * STS, for AWS outbound identity federation (`sts:GetWebIdentityToken`); asked for only
   * when a token is needed, so its SDK is loaded only then.
   */
  sts: () => Promise<STSClient>;
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
 *
 * `@azure/identity` (with MSAL) is loaded only for the credentials that need it: a service
 * principal, workload identity, or the environment's `DefaultAzureCredential`.
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
      service: await serviceFromText(
        url,
        text,
        `environment variable ${credential.connectionStringEnv}`,
      ),
    };
  }
  if ('secretArn' in credential) {
    const secret = await sources.secrets.get(credential.secretArn);
    return {
      service: await serviceFromText(url, secret, `secret ${credential.secretArn}`),
      secret,
    };
  }
  const { tenantId, clientId } = credential.workloadIdentity;
  const [{ ClientAssertionCredential }, { GetWebIdentityTokenCommand }] = await Promise.all([
    import('@azure/identity'),
    import('@aws-sdk/client-sts'),
  ]);
  const token = new ClientAssertionCredential(tenantId, clientId, async () => {
    const out = await (await sources.sts()).send(
      new GetWebIdentityTokenCommand({
        Audience: [WEB_IDENTITY_TOKEN.audience],
        SigningAlgorithm: WEB_IDENTITY_TOKEN.signingAlgorithm,
        DurationSeconds: WEB_IDENTITY_TOKEN.durationSeconds,
      }),
    );
    if (!out.WebIdentityToken)
      throw new PermanentError('STS GetWebIdentityToken returned no token');
    return out.WebIdentityToken;
  });
  return { service: new BlobServiceClient(url, token, pipelineOptions) };
}

/**
 * Builds the client from a secret's text: a connection string, an account key, a SAS token,
 * or a service principal as JSON `{"tenantId","clientId","clientSecret"}` (only then is
 * `@azure/identity` loaded). Errors say which secret, never what it holds.
 */
async function serviceFromText(url: string, text: string, where: string) {
  if (!isServicePrincipalText(text)) return serviceFromKeyOrSas(url, text, where);
  const principal = servicePrincipalOf(text, where);
  const { ClientSecretCredential } = await import('@azure/identity');
  return new BlobServiceClient(
    url,
    new ClientSecretCredential(principal.tenantId, principal.clientId, principal.clientSecret),
    pipelineOptions,
  );
}

/** Whether a secret's text is JSON, which only a service principal is. */
export function isServicePrincipalText(text: string): boolean {
  return text.trim().startsWith('{');
}

/** A service principal from a secret's JSON text. Errors say which secret, never what it holds. */
export function servicePrincipalOf(
  text: string,
  where: string,
): { tenantId: string; clientId: string; clientSecret: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.trim());
  } catch {
    throw new UsageError(`the ${where} looks like JSON but does not parse`);
  }
  const principal = parsed as Record<string, unknown>;
  if (
    typeof principal.tenantId === 'string' &&
    typeof principal.clientId === 'string' &&
    typeof principal.clientSecret === 'string'
  ) {
    return {
      tenantId: principal.tenantId,
      clientId: principal.clientId,
      clientSecret: principal.clientSecret,
    };
  }
  throw new UsageError(
    `the ${where} is JSON without "tenantId", "clientId" and "clientSecret" (a service principal)`,
  );
}

/**
 * Builds the client from a secret's text that is not JSON: a connection string (with an
 * account key or a SAS), a SAS token, or an account key. Errors say which secret, never what
 * it holds.
 */
export function serviceFromKeyOrSas(url: string, text: string, where: string): BlobServiceClient {
  const value = text.trim();
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
