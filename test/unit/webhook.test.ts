import type { webcrypto } from 'node:crypto';
import { SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { generateKeyPair, SignJWT } from 'jose';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { createEventGridHandler } from '../../handlers/eventgrid.ts';
import type { DeliveryAuth } from '../../src/auth/event-grid-auth.ts';
import type { ReplicationConfig } from '../../src/config/schema.ts';
import type { MalformedEvent } from '../../src/events/event-grid.ts';
import type { ObjectEvent } from '../../src/events/object-event.ts';
import { handleWebhook, MAX_DEPTH, type WebhookRequest } from '../../src/events/webhook.ts';
import { buildRuntime } from '../../src/runtime/runtime.ts';
import { entraFixture } from '../support/entra.ts';

const TENANT = '11111111-2222-3333-4444-555555555555';
const AUDIENCE = 'api://s3az-webhook';
/** Event Grid's first-party application (Azure public cloud), the caller of its deliveries. */
const EVENT_GRID_APP_ID = '4962773b-9cdb-44cf-a8bf-237846a00ab7';
let signingKey: webcrypto.CryptoKey;
let otherKey: webcrypto.CryptoKey;
let entra: Extract<DeliveryAuth, { mode: 'entra' }>;

beforeAll(async () => {
  ({ signingKey, auth: entra } = await entraFixture(TENANT, AUDIENCE));
  otherKey = (await generateKeyPair('RS256')).privateKey;
});

function token(
  overrides: {
    issuer?: string;
    audience?: string;
    expiresIn?: string;
    key?: webcrypto.CryptoKey;
    claims?: Record<string, unknown>;
  } = {},
) {
  return new SignJWT({
    roles: ['AzureEventGridSecureWebhookSubscriber'],
    azp: EVENT_GRID_APP_ID,
    ...overrides.claims,
  })
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

function recorder(fail = false, failDeadLetter = false) {
  const stored: ObjectEvent[][] = [];
  const items: unknown[][] = [];
  const ignored: string[][] = [];
  const replicas: ObjectEvent[][] = [];
  const deadLettered: MalformedEvent[][] = [];
  return {
    stored,
    items,
    ignored,
    replicas,
    deadLettered,
    deps: (auth: DeliveryAuth) => ({
      auth,
      enqueue: async (events: ObjectEvent[], delivered: unknown[]) => {
        if (fail) throw new Error('SQS said no');
        stored.push(events);
        items.push(delivered);
      },
      deadLetter: async (malformed: MalformedEvent[]) => {
        if (failDeadLetter) throw new Error('the dead-letter queue said no');
        deadLettered.push(malformed);
      },
      countIgnored: (types: string[]) => ignored.push(types),
      countReplicas: (events: ObjectEvent[]) => replicas.push(events),
    }),
  };
}

describe('Function: handleWebhook', () => {
  it('refuses with 400, storing nothing, a delivery nested deeper than any Event Grid event', async () => {
    // Prepare: a valid event whose data holds 5,000 nested arrays (JSON.stringify would overflow).
    const sink = recorder();
    const deep = `[{"id":"d1","eventType":"Microsoft.Storage.BlobCreated","subject":"/blobServices/default/containers/c/blobs/k","eventTime":"2026-01-01T00:00:00Z","data":{"x":${'['.repeat(5000)}${']'.repeat(5000)}}}]`;
    // Act
    const response = await handleWebhook(
      post(deep, { authorization: `Bearer ${await token()}` }),
      sink.deps(entra),
    );
    // Assess
    expect(response.status).toBe(400);
    expect(response.body).toContain(`nested deeper than ${MAX_DEPTH} levels`);
    expect(sink.stored).toEqual([]);
    expect(sink.deadLettered).toEqual([]);
  });

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
    expect(JSON.parse(response.body)).toEqual({
      stored: 1,
      ignored: 1,
      replicas: 1,
      deadLettered: 0,
    });
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

  it.each([
    ['the network fails', new TypeError('fetch failed')],
    [
      'the key endpoint times out',
      Object.assign(new Error('timed out'), { code: 'ERR_JWKS_TIMEOUT' }),
    ],
  ])(
    "answers 503, not 401, when the tenant's signing keys cannot be fetched (%s)",
    async (_label, failure) => {
      // A 401 is never retried: Event Grid would drop or dead-letter a genuine delivery.
      const sink = recorder();
      const response = await handleWebhook(
        post(blobCreated, { authorization: `Bearer ${await token()}` }),
        sink.deps({ ...entra, keys: async () => Promise.reject(failure) }),
      );
      expect(response.status).toBe(503);
      expect(JSON.parse(response.body).error).toMatch(/signing keys/);
      expect(sink.stored).toEqual([]);
    },
  );

  it.each([
    ['no app role', { roles: undefined }],
    ['other app roles', { roles: ['Reader'] }],
  ])(
    'answers 401 to a token of the tenant with %s, naming the role it lacks',
    async (_label, claims) => {
      const sink = recorder();
      const jwt = await token({ claims });
      const response = await handleWebhook(
        post(blobCreated, { authorization: `Bearer ${jwt}` }),
        sink.deps(entra),
      );
      expect(response.status).toBe(401);
      expect(JSON.parse(response.body).error).toMatch(/AzureEventGridSecureWebhookSubscriber/);
      expect(response.body).not.toContain(jwt);
      expect(sink.stored).toEqual([]);
    },
  );

  it("answers 401 to a token with the role that was not issued to Event Grid's app", async () => {
    // The setup scripts give the role to the subscription writer too.
    const sink = recorder();
    const response = await handleWebhook(
      post(blobCreated, {
        authorization: `Bearer ${await token({ claims: { azp: 'aaaaaaaa-0000-0000-0000-000000000001' } })}`,
      }),
      sink.deps(entra),
    );
    expect(response.status).toBe(401);
    expect(sink.stored).toEqual([]);
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
    ['a number', '5', /not an array of events or an event/],
    ['a string', '"BlobCreated"', /not an array of events or an event/],
    ['null', 'null', /not an array of events or an event/],
    ['an empty batch', '[]', /no events/],
  ])('answers 400 with the reason to a body that is %s', async (_label, body, reason) => {
    const sink = recorder();
    const response = await handleWebhook(post(body), sink.deps({ mode: 'none' }));
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body).error).toMatch(reason);
    expect(sink.stored).toEqual([]);
    expect(sink.deadLettered).toEqual([]);
  });

  it('stores the good events, dead-letters each malformed one with its reason, and answers 200', async () => {
    // Event Grid does not retry a 400: the good events of the batch would be lost with it.
    const sink = recorder();
    const noData = { id: 'bad-1', eventType: 'Microsoft.Storage.BlobCreated' };
    const badUrl = {
      ...blobCreated[0],
      id: 'bad-2',
      data: { ...blobCreated[0]?.data, url: 'not a url' },
    };
    const response = await handleWebhook(
      post([noData, blobCreated[0], 7, badUrl, blobCreated[1]]),
      sink.deps({ mode: 'none' }),
    );
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({
      stored: 1,
      ignored: 1,
      replicas: 0,
      deadLettered: 3,
    });
    expect(sink.items).toEqual([[blobCreated[0]]]);
    expect(sink.deadLettered).toHaveLength(1);
    const malformed = sink.deadLettered[0] ?? [];
    expect(malformed.map((entry) => entry.item)).toEqual([noData, 7, badUrl]);
    expect(malformed.map((entry) => entry.error.message)).toEqual([
      expect.stringMatching(/"data" is missing/),
      expect.stringMatching(/event 2 is not an object/),
      expect.stringMatching(/is not a URL/),
    ]);
  });

  it('dead-letters a single CloudEvent that does not parse, and answers 200', async () => {
    const sink = recorder();
    const bad = { specversion: '1.0', id: 'ce', type: 'Microsoft.Storage.BlobCreated' };
    const response = await handleWebhook(post(bad), sink.deps({ mode: 'none' }));
    expect(response.status).toBe(200);
    expect(sink.deadLettered[0]?.map((entry) => entry.item)).toEqual([bad]);
  });

  it.each([
    ['the malformed events cannot be dead-lettered', recorder(false, true)],
    ['the good events cannot be stored', recorder(true, false)],
  ])('answers 503 when %s, so Event Grid delivers again', async (_label, sink) => {
    const response = await handleWebhook(
      post([{ id: 'bad', eventType: 'x' }, ...blobCreated]),
      sink.deps({ mode: 'none' }),
    );
    expect(response.status).toBe(503);
  });

  it('answers 503 when the events could not all be stored, so Event Grid delivers again', async () => {
    const response = await handleWebhook(post(blobCreated), recorder(true).deps({ mode: 'none' }));
    expect(response.status).toBe(503);
  });
});

describe('Function: createEventGridHandler', () => {
  const EVENTS = 'https://sqs.eu-west-1.amazonaws.com/123456789012/events';
  const EVENTS_DLQ = 'https://sqs.eu-west-1.amazonaws.com/123456789012/events-dlq';

  async function handlerWith(send: (command: unknown) => Promise<unknown>) {
    const sqs = new SQSClient({
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
    });
    vi.spyOn(sqs, 'send').mockImplementation(send as SQSClient['send']);
    const config = {
      rules: [],
      eventGrid: { auth: { mode: 'shared-secret', secretEnv: 'S3AZ_TEST_WEBHOOK_SECRET' } },
    } as unknown as ReplicationConfig;
    const runtime = buildRuntime({
      config,
      sqs,
      env: {
        S3AZ_EVENTS_QUEUE_URL: EVENTS,
        S3AZ_EVENTS_DLQ_URL: EVENTS_DLQ,
        S3AZ_TEST_WEBHOOK_SECRET: 'hook-secret',
      },
    });
    const handler = createEventGridHandler(() => runtime);
    return (body: unknown) =>
      handler({
        headers: { 'x-s3az-secret': 'hook-secret' },
        body: JSON.stringify(body),
        isBase64Encoded: false,
        requestContext: { http: { method: 'POST' } },
      } as unknown as APIGatewayProxyEventV2);
  }

  it('stores the good events in the events queue and the bad ones in its dead-letter queue', async () => {
    const sent: unknown[] = [];
    const deliver = await handlerWith(async (command) => {
      sent.push(command);
      return command instanceof SendMessageBatchCommand ? { Successful: [], Failed: [] } : {};
    });
    const bad = { id: 'bad', eventType: 'Microsoft.Storage.BlobCreated' };
    const result = await deliver([bad, blobCreated[0]]);
    expect(result.statusCode).toBe(200);
    const batch = sent.find((command) => command instanceof SendMessageBatchCommand);
    expect(batch?.input).toMatchObject({
      QueueUrl: EVENTS,
      Entries: [{ MessageBody: JSON.stringify(blobCreated[0]) }],
    });
    const dead = sent.filter((command) => command instanceof SendMessageCommand);
    expect(dead).toHaveLength(1);
    expect(dead[0]?.input).toMatchObject({
      QueueUrl: EVENTS_DLQ,
      MessageBody: JSON.stringify(bad),
      MessageAttributes: {
        reason: { StringValue: 'malformed-event' },
        error: { StringValue: expect.stringMatching(/"data" is missing/) },
        sourceQueue: { StringValue: EVENTS },
      },
    });
  });

  it('answers 503 when the dead-letter queue refuses a malformed event', async () => {
    const deliver = await handlerWith(async (command) => {
      if (command instanceof SendMessageCommand) throw new Error('AccessDenied');
      return { Successful: [], Failed: [] };
    });
    const result = await deliver([{ id: 'bad', eventType: 'x' }, blobCreated[0]]);
    expect(result.statusCode).toBe(503);
  });
});
