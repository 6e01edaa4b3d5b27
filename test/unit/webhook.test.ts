import type { webcrypto } from 'node:crypto';
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DeliveryAuth } from '../../src/auth/event-grid-auth.ts';
import type { ObjectEvent } from '../../src/events/object-event.ts';
import { handleWebhook, type WebhookRequest } from '../../src/events/webhook.ts';

const TENANT = '11111111-2222-3333-4444-555555555555';
const AUDIENCE = 'api://s3az-webhook';
let signingKey: webcrypto.CryptoKey;
let otherKey: webcrypto.CryptoKey;
let entra: DeliveryAuth;

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  const other = await generateKeyPair('RS256');
  signingKey = pair.privateKey;
  otherKey = other.privateKey;
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256' };
  entra = {
    mode: 'entra',
    tenantId: TENANT,
    audience: AUDIENCE,
    keys: createLocalJWKSet({ keys: [jwk] }),
  };
});

function token(
  overrides: {
    issuer?: string;
    audience?: string;
    expiresIn?: string;
    key?: webcrypto.CryptoKey;
  } = {},
) {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setIssuer(overrides.issuer ?? `https://login.microsoftonline.com/${TENANT}/v2.0`)
    .setAudience(overrides.audience ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(overrides.expiresIn ?? '5m')
    .sign(overrides.key ?? signingKey);
}

const blobCreated = [
  {
    id: 'e1',
    eventType: 'Microsoft.Storage.BlobCreated',
    eventTime: '2026-11-22T10:00:00Z',
    data: {
      api: 'PutBlob',
      url: 'https://acct.blob.core.windows.net/c/k',
      eTag: '0x1',
      contentLength: 1,
    },
  },
  {
    id: 'e2',
    eventType: 'Microsoft.Storage.BlobTierChanged',
    eventTime: '2026-11-22T10:00:00Z',
    data: {},
  },
];

function post(
  body: unknown,
  headers: Record<string, string> = {},
  query: Record<string, string> = {},
): WebhookRequest {
  return {
    method: 'POST',
    headers,
    query,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  };
}

function recorder(fail = false) {
  const stored: ObjectEvent[][] = [];
  const items: unknown[][] = [];
  const ignored: string[][] = [];
  const replicas: ObjectEvent[][] = [];
  return {
    stored,
    items,
    ignored,
    replicas,
    deps: (auth: DeliveryAuth) => ({
      auth,
      enqueue: async (events: ObjectEvent[], delivered: unknown[]) => {
        if (fail) throw new Error('SQS said no');
        stored.push(events);
        items.push(delivered);
      },
      countIgnored: (types: string[]) => ignored.push(types),
      countReplicas: (events: ObjectEvent[]) => replicas.push(events),
    }),
  };
}

describe('Function: handleWebhook', () => {
  it('stores the events of a delivery with a valid Entra ID token, and counts ignored types', async () => {
    const sink = recorder();
    const response = await handleWebhook(
      post(blobCreated, { authorization: `Bearer ${await token()}` }),
      sink.deps(entra),
    );
    expect(response.status).toBe(200);
    expect(sink.stored[0]?.map((e) => e.key)).toEqual(['k']);
    expect(sink.ignored).toEqual([['Microsoft.Storage.BlobTierChanged']]);
  });

  it("stores each event's own JSON, and skips the events of the replicator's own writes", async () => {
    const sink = recorder();
    const own = {
      id: 'e3',
      eventType: 'Microsoft.Storage.BlobCreated',
      eventTime: '2026-11-22T10:00:01Z',
      data: {
        api: 'PutBlobFromUrl',
        clientRequestId: 's3az-replicator-5b0c1e4e-8f0e-4f8e-a1a1-000000000001',
        url: 'https://acct.blob.core.windows.net/c/replica',
        eTag: '0x2',
        contentLength: 1,
      },
    };
    const response = await handleWebhook(
      post([...blobCreated, own], { authorization: `Bearer ${await token()}` }),
      sink.deps(entra),
    );
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ stored: 1, ignored: 1, replicas: 1 });
    expect(sink.stored[0]?.map((e) => e.key)).toEqual(['k']);
    expect(sink.items).toEqual([[blobCreated[0]]]);
    expect(sink.replicas[0]?.map((e) => e.key)).toEqual(['replica']);
  });

  it("stores nothing for a delivery of only the replicator's own writes", async () => {
    const sink = recorder();
    const own = {
      ...blobCreated[0],
      data: { ...blobCreated[0]?.data, clientRequestId: 's3az-replicator-1' },
    };
    const response = await handleWebhook(
      post([own], { authorization: `Bearer ${await token()}` }),
      sink.deps(entra),
    );
    expect(response.status).toBe(200);
    expect(sink.stored).toEqual([]);
    expect(sink.replicas).toHaveLength(1);
  });

  it("counts the replicator's own events only when the delivery is accepted", async () => {
    const own = {
      ...blobCreated[0],
      id: 'e4',
      data: { ...blobCreated[0]?.data, clientRequestId: 's3az-replicator-2' },
    };
    const failing = recorder(true);
    const refused = await handleWebhook(
      post([...blobCreated, own], { authorization: `Bearer ${await token()}` }),
      failing.deps(entra),
    );
    // Event Grid delivers a refused delivery again: it is counted then.
    expect(refused.status).toBe(503);
    expect(failing.replicas).toEqual([]);
  });

  it('accepts the v1 issuer form too', async () => {
    const sink = recorder();
    const v1 = await token({ issuer: `https://sts.windows.net/${TENANT}/` });
    expect(
      (await handleWebhook(post(blobCreated, { authorization: `Bearer ${v1}` }), sink.deps(entra)))
        .status,
    ).toBe(200);
  });

  it.each([
    ['no token', async () => ({})],
    [
      'another audience',
      async () => ({ authorization: `Bearer ${await token({ audience: 'api://other' })}` }),
    ],
    [
      'another tenant',
      async () => ({
        authorization: `Bearer ${await token({ issuer: 'https://login.microsoftonline.com/evil/v2.0' })}`,
      }),
    ],
    [
      'an expired token',
      async () => ({ authorization: `Bearer ${await token({ expiresIn: '-10m' })}` }),
    ],
    [
      'a forged signature',
      async () => ({ authorization: `Bearer ${await token({ key: otherKey })}` }),
    ],
    ['garbage', async () => ({ authorization: 'Bearer not.a.jwt' })],
  ])('answers 401 to %s and stores nothing', async (_label, headers) => {
    const sink = recorder();
    const response = await handleWebhook(post(blobCreated, await headers()), sink.deps(entra));
    expect(response.status).toBe(401);
    expect(sink.stored).toEqual([]);
    expect(response.body).not.toMatch(/eyJ/);
  });

  it('checks a shared secret from the header or the query, in constant time', async () => {
    const auth: DeliveryAuth = { mode: 'shared-secret', secret: 's3cret-value' };
    const sink = recorder();
    expect(
      (await handleWebhook(post(blobCreated, { 'x-s3az-secret': 's3cret-value' }), sink.deps(auth)))
        .status,
    ).toBe(200);
    expect(
      (await handleWebhook(post(blobCreated, {}, { code: 's3cret-value' }), sink.deps(auth)))
        .status,
    ).toBe(200);
    const wrong = await handleWebhook(
      post(blobCreated, { 'x-s3az-secret': 's3cret-valuf' }),
      sink.deps(auth),
    );
    expect(wrong.status).toBe(401);
    expect(wrong.body).not.toContain('s3cret');
    expect(sink.stored).toHaveLength(2);
  });

  it('answers the Event Grid subscription handshake', async () => {
    const sink = recorder();
    const response = await handleWebhook(
      post(
        [
          {
            id: 'v',
            eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
            eventTime: 't',
            data: { validationCode: 'ABC' },
          },
        ],
        {
          authorization: `Bearer ${await token()}`,
        },
      ),
      sink.deps(entra),
    );
    expect(response).toMatchObject({ status: 200 });
    expect(JSON.parse(response.body)).toEqual({ validationResponse: 'ABC' });
  });

  it('answers the CloudEvents abuse-protection handshake', async () => {
    const response = await handleWebhook(
      {
        method: 'OPTIONS',
        headers: { 'webhook-request-origin': 'eventgrid.azure.net' },
        query: {},
        body: '',
      },
      recorder().deps(entra),
    );
    expect(response).toMatchObject({
      status: 200,
      headers: { 'webhook-allowed-origin': 'eventgrid.azure.net', 'webhook-allowed-rate': '*' },
    });
  });

  it('refuses a 2 MiB body with 413', async () => {
    const response = await handleWebhook(
      post('x'.repeat(2 * 1024 * 1024)),
      recorder().deps({ mode: 'none' }),
    );
    expect(response.status).toBe(413);
  });

  it.each([
    ['not JSON', '{', /not valid JSON/],
    ['not events', '[{"foo":1}]', /"eventType" is missing/],
  ])('answers 400 with the reason to %s', async (_label, body, reason) => {
    const response = await handleWebhook(post(body), recorder().deps({ mode: 'none' }));
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body).error).toMatch(reason);
  });

  it('answers 503 when the events could not all be stored, so Event Grid delivers again', async () => {
    const response = await handleWebhook(post(blobCreated), recorder(true).deps({ mode: 'none' }));
    expect(response.status).toBe(503);
  });
});
