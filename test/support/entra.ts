import type { webcrypto } from 'node:crypto';
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { DeliveryAuth } from '../../src/auth/event-grid-auth.ts';

/**
 * A tenant's signing key for tests, published as key `k1`, and the webhook's Entra ID
 * authentication that trusts it.
 */
export async function entraFixture(
  tenantId: string,
  audience: string,
): Promise<{ signingKey: webcrypto.CryptoKey; auth: Extract<DeliveryAuth, { mode: 'entra' }> }> {
  const pair = await generateKeyPair('RS256');
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256' };
  return {
    signingKey: pair.privateKey,
    auth: { mode: 'entra', tenantId, audience, keys: createLocalJWKSet({ keys: [jwk] }) },
  };
}
