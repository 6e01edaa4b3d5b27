import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { describe, expect, it } from 'vitest';
import {
  authenticateDelivery,
  RereadableSharedSecret,
  SECRET_HEADER,
} from '../../src/auth/event-grid-auth.ts';
import { type SecretSource, SecretsManagerSource } from '../../src/auth/secrets.ts';
import { configSchema } from '../../src/config/schema.ts';
import { buildRuntime } from '../../src/runtime/runtime.ts';

const HOOK_ARN = 'arn:aws:secretsmanager:us-east-1:111111111111:secret:hook';

/**
 * A hand-written secret source at the SDK boundary: `get` serves what was read first (as the
 * 15-minute cache does), `refresh` reads the stored value again.
 */
function rotatingSource(initial: string) {
  let stored = initial;
  let cached: string | undefined;
  const reads: string[] = [];
  const source: SecretSource = {
    async get(arn) {
      if (cached === undefined) {
        reads.push(`get ${arn}`);
        cached = stored;
      }
      return cached;
    },
    async refresh(arn) {
      reads.push(`refresh ${arn}`);
      cached = stored;
      return cached;
    },
  };
  return {
    source,
    reads,
    rotate(value: string) {
      stored = value;
    },
  };
}

const config = configSchema.parse({
  rules: [
    {
      name: 'r',
      s3: { bucket: 'bucket-a' },
      azure: { accountUrl: 'https://account.blob.core.windows.net', container: 'container-a' },
    },
  ],
  eventGrid: { auth: { mode: 'shared-secret', secretArn: HOOK_ARN } },
});

const delivery = (secret: string) => ({ headers: { [SECRET_HEADER]: secret }, query: {} });

describe('Function: buildRuntime (webhook shared secret rotation)', () => {
  it('accepts a delivery with a rotated secret after one fresh read, and refuses forged ones without more reads', async () => {
    // Prepare
    const secrets = rotatingSource('old-secret\n');
    const runtime = await buildRuntime({
      env: { AWS_REGION: 'us-east-1' },
      config,
      secrets: secrets.source,
    });
    expect(await authenticateDelivery(await runtime.webhookAuth(), delivery('old-secret'))).toEqual(
      {
        ok: true,
      },
    );
    secrets.rotate('new-secret\n');

    // Act
    const rotated = await authenticateDelivery(await runtime.webhookAuth(), delivery('new-secret'));
    const forged = await authenticateDelivery(await runtime.webhookAuth(), delivery('forged'));
    const again = await authenticateDelivery(await runtime.webhookAuth(), delivery('new-secret'));
    const old = await authenticateDelivery(await runtime.webhookAuth(), delivery('old-secret'));

    // Assess
    expect(rotated).toEqual({ ok: true });
    expect(forged).toEqual({ ok: false, reason: 'wrong shared secret', retryable: false });
    expect(again).toEqual({ ok: true });
    // The rotated-out value is no longer accepted.
    expect(old).toEqual({ ok: false, reason: 'wrong shared secret', retryable: false });
    // One read at start, one fresh read for the rotation; the forged and old-secret requests
    // came within the minute after it and read nothing.
    expect(secrets.reads).toEqual([`get ${HOOK_ARN}`, `refresh ${HOOK_ARN}`]);
  });
});

describe('Class: RereadableSharedSecret', () => {
  it('reads again at most once per interval, and once for concurrent deliveries', async () => {
    // Prepare
    let clock = 0;
    let reads = 0;
    const auth = new RereadableSharedSecret(
      'a',
      async () => {
        reads += 1;
        return reads === 1 ? 'a' : 'b';
      },
      { now: () => clock },
    );

    // Act
    const first = await Promise.all([
      authenticateDelivery(auth, delivery('b')),
      authenticateDelivery(auth, delivery('b')),
    ]);
    clock = 59_999;
    const throttled = await authenticateDelivery(auth, delivery('b'));
    clock = 60_000;
    const later = await authenticateDelivery(auth, delivery('b'));

    // Assess
    expect(first.map((result) => result.ok)).toEqual([false, false]);
    expect(throttled.ok).toBe(false);
    expect(later).toEqual({ ok: true });
    expect(reads).toBe(2);
  });

  it('says the delivery could not be checked when the fresh read fails', async () => {
    const auth = new RereadableSharedSecret('a', async () => {
      throw new Error('throttled');
    });
    const result = await authenticateDelivery(auth, delivery('b'));
    expect(result).toMatchObject({ ok: false, retryable: true });
    expect(auth.secret).toBe('a');
  });
});

describe('Class: SecretsManagerSource', () => {
  it('reads again on refresh, bypassing the cache, and serves the fresh value after', async () => {
    // Prepare: a stubbed client at the SDK boundary.
    const values = ['v1', 'v2'];
    let sent = 0;
    const client = {
      send: async () => ({ SecretString: values[sent++] }),
    } as unknown as SecretsManagerClient;
    const source = new SecretsManagerSource(client);

    // Act
    const first = await source.get(HOOK_ARN);
    const cached = await source.get(HOOK_ARN);
    const fresh = await source.refresh(HOOK_ARN);
    const after = await source.get(HOOK_ARN);

    // Assess
    expect([first, cached, fresh, after]).toEqual(['v1', 'v1', 'v2', 'v2']);
    expect(sent).toBe(2);
  });
});
