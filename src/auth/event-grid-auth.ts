import { createHash, timingSafeEqual } from 'node:crypto';
import { createRemoteJWKSet, type JWTVerifyGetKey, jwtVerify } from 'jose';

/** How Event Grid deliveries to the webhook are authenticated. */
export type DeliveryAuth =
  | {
      mode: 'entra';
      tenantId: string;
      /** Application ID URI or client id the subscription's tokens are issued for. */
      audience: string;
      /** Key source; by default the tenant's published keys. Tests pass a local key set. */
      keys?: JWTVerifyGetKey;
    }
  | { mode: 'shared-secret'; secret: string }
  | { mode: 'none' };

export interface DeliveryCredentials {
  /** Header names in lower case. */
  headers: Record<string, string | undefined>;
  query: Record<string, string | undefined>;
}

export type AuthResult = { ok: true } | { ok: false; reason: string };

/** Header or query parameter that carries a shared secret (set as an Event Grid delivery attribute). */
export const SECRET_HEADER = 'x-s3az-secret';
export const SECRET_QUERY = 'code';

const remoteKeys = new Map<string, JWTVerifyGetKey>();

function tenantKeys(tenantId: string): JWTVerifyGetKey {
  let keys = remoteKeys.get(tenantId);
  if (!keys) {
    keys = createRemoteJWKSet(
      new URL(
        `https://login.microsoftonline.com/${encodeURIComponent(tenantId)}/discovery/v2.0/keys`,
      ),
    );
    remoteKeys.set(tenantId, keys);
  }
  return keys;
}

/** Compares secrets in constant time, whatever their lengths. */
export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * Checks one delivery: a Microsoft Entra ID bearer token (signature against the tenant's keys,
 * issuer of that tenant in v1 or v2 form, audience, expiry), or a shared secret, or nothing
 * when the configuration says so. The reason never contains the token or the secret.
 */
export async function authenticateDelivery(
  auth: DeliveryAuth,
  credentials: DeliveryCredentials,
): Promise<AuthResult> {
  if (auth.mode === 'none') return { ok: true };
  if (auth.mode === 'shared-secret') {
    const given = credentials.headers[SECRET_HEADER] ?? credentials.query[SECRET_QUERY];
    if (given === undefined) return { ok: false, reason: 'no shared secret in the request' };
    return secretsEqual(given, auth.secret)
      ? { ok: true }
      : { ok: false, reason: 'wrong shared secret' };
  }
  const header = credentials.headers.authorization;
  const token = header?.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : undefined;
  if (!token) return { ok: false, reason: 'no bearer token' };
  try {
    await jwtVerify(token, auth.keys ?? tenantKeys(auth.tenantId), {
      issuer: [
        `https://login.microsoftonline.com/${auth.tenantId}/v2.0`,
        `https://sts.windows.net/${auth.tenantId}/`,
      ],
      audience: auth.audience,
      // Entra signs with RS256.
      algorithms: ['RS256'],
      clockTolerance: 60,
    });
    return { ok: true };
  } catch (error) {
    const code = (error as { code?: string }).code ?? 'ERR_JWT_INVALID';
    return { ok: false, reason: `bearer token refused (${code})` };
  }
}
