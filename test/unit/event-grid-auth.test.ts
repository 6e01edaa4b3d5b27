import type { webcrypto } from 'node:crypto';
import { errors, type JWTPayload, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  authenticateDelivery,
  type DeliveryAuth,
  EVENT_GRID_APP_IDS,
  EVENT_GRID_ROLE,
} from '../../src/auth/event-grid-auth.ts';
import { entraFixture } from '../support/entra.ts';

const TENANT = '11111111-2222-3333-4444-555555555555';
const AUDIENCE = 'api://s3az-webhook';
/** Event Grid's first-party application in the Azure public cloud. */
const EVENT_GRID_APP_ID = '4962773b-9cdb-44cf-a8bf-237846a00ab7';
let signingKey: webcrypto.CryptoKey;
let entra: Extract<DeliveryAuth, { mode: 'entra' }>;

beforeAll(async () => {
  ({ signingKey, auth: entra } = await entraFixture(TENANT, AUDIENCE));
});

/** A v2 token as Event Grid's service principal gets it, with `claims` replacing any claim. */
function token(claims: JWTPayload = {}, kid = 'k1') {
  return new SignJWT({
    roles: ['AzureEventGridSecureWebhookSubscriber'],
    azp: EVENT_GRID_APP_ID,
    ...claims,
  })
    .setProtectedHeader({ alg: 'RS256', kid })
    .setIssuer(`https://login.microsoftonline.com/${TENANT}/v2.0`)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(signingKey);
}

const bearer = async (jwt: Promise<string>) => ({
  headers: { authorization: `Bearer ${await jwt}` },
  query: {},
});

describe('Function: authenticateDelivery (Entra ID)', () => {
  it("accepts Event Grid's token: the tenant's issuer, the audience, the app role, Event Grid's app id", async () => {
    expect(await authenticateDelivery(entra, await bearer(token()))).toEqual({ ok: true });
  });

  it('accepts the v1 form, where the caller is in `appid`', async () => {
    const v1 = new SignJWT({ roles: [EVENT_GRID_ROLE], appid: EVENT_GRID_APP_ID })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(`https://sts.windows.net/${TENANT}/`)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(signingKey);
    expect(await authenticateDelivery(entra, await bearer(v1))).toEqual({ ok: true });
  });

  it('knows the public and US Government clouds’ Event Grid apps', () => {
    expect(EVENT_GRID_APP_IDS).toEqual([
      '4962773b-9cdb-44cf-a8bf-237846a00ab7',
      '54316b56-3481-47f9-8f30-0300f5542a7b',
    ]);
  });

  it.each([
    ['no roles claim', { roles: undefined }],
    ['other roles only', { roles: ['Reader', 'Writer'] }],
    ['the role as a string, not a list', { roles: 'AzureEventGridSecureWebhookSubscriber' }],
  ])(
    'refuses a token of the tenant with %s, naming the missing role, as not retryable',
    async (_label, claims) => {
      const result = await authenticateDelivery(entra, await bearer(token(claims)));
      expect(result).toMatchObject({ ok: false, retryable: false });
      expect(result.ok === false && result.reason).toMatch(/AzureEventGridSecureWebhookSubscriber/);
      expect(result.ok === false && result.reason).not.toMatch(/eyJ/);
    },
  );

  it.each([
    // The setup scripts give the role to the subscription writer too (a user or an app).
    ["the subscription writer's app", { azp: 'aaaaaaaa-0000-0000-0000-000000000001' }],
    ['no caller application id', { azp: undefined }],
  ])('refuses a token with the role from %s', async (_label, claims) => {
    const result = await authenticateDelivery(entra, await bearer(token(claims)));
    expect(result).toMatchObject({ ok: false, retryable: false });
    expect(result.ok === false && result.reason).toMatch(/Event Grid/);
  });

  it('accepts another cloud’s Event Grid app when configured', async () => {
    const china = 'cccccccc-0000-0000-0000-000000000001';
    const auth = { ...entra, eventGridAppIds: [china] };
    expect(await authenticateDelivery(auth, await bearer(token({ azp: china })))).toEqual({
      ok: true,
    });
    expect(await authenticateDelivery(auth, await bearer(token()))).toMatchObject({ ok: false });
  });

  it.each([
    ['the network fails', new TypeError('fetch failed')],
    ['the key endpoint times out', new errors.JWKSTimeout()],
    [
      'the key endpoint answers 503',
      new errors.JOSEError('Expected 200 OK from the JSON Web Key Set HTTP response'),
    ],
    ['the key set is malformed', new errors.JWKSInvalid()],
  ])('says the delivery could not be checked (retryable) when %s', async (_label, failure) => {
    const auth = { ...entra, keys: async () => Promise.reject(failure) };
    const result = await authenticateDelivery(auth, await bearer(token()));
    expect(result).toMatchObject({ ok: false, retryable: true });
    expect(result.ok === false && result.reason).toMatch(/signing keys/);
  });

  it('refuses a token signed with a key the tenant does not publish, as not retryable', async () => {
    // The remote key set fetches the keys again for an unknown kid before it says so.
    const result = await authenticateDelivery(entra, await bearer(token({}, 'unknown-kid')));
    expect(result).toMatchObject({ ok: false, retryable: false });
  });

  it('refuses a token without asking for keys when the token is not a JWT', async () => {
    let asked = false;
    const auth = {
      ...entra,
      keys: async () => {
        asked = true;
        throw new TypeError('fetch failed');
      },
    };
    const result = await authenticateDelivery(auth, {
      headers: { authorization: 'Bearer not.a.jwt' },
      query: {},
    });
    expect(result).toMatchObject({ ok: false, retryable: false });
    expect(asked).toBe(false);
  });
});
