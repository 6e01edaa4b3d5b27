import { createHash, timingSafeEqual } from 'node:crypto';
import { createRemoteJWKSet, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { RetryableError } from '../errors.ts';

/** How Event Grid deliveries to the webhook are authenticated. */
export type DeliveryAuth =
  | {
      mode: 'entra';
      tenantId: string;
      /** Application ID URI or client id the subscription's tokens are issued for. */
      audience: string;
      /** Key source; by default the tenant's published keys. Tests pass a local key set. */
      keys?: JWTVerifyGetKey;
      /**
       * Application ids of Event Grid's own service principal that deliveries may come from
       * (the token's `azp` or `appid`). Default: `EVENT_GRID_APP_IDS`; another cloud's
       * Event Grid app (portal: Microsoft.EventGrid service principal) goes here.
       */
      eventGridAppIds?: readonly string[];
    }
  | SharedSecretAuth
  | { mode: 'none' };

/** Deliveries carry a shared secret (header `SECRET_HEADER` or query parameter `SECRET_QUERY`). */
export interface SharedSecretAuth {
  mode: 'shared-secret';
  /** The value deliveries must carry. */
  readonly secret: string;
  /**
   * Reads the secret again, when it may have been rotated; afterwards `secret` is the value
   * read. Only a delivery whose secret does not match calls it.
   */
  reread?(): Promise<void>;
}

/** How often a wrong secret may cause a fresh read at most (see `RereadableSharedSecret`). */
export const SECRET_REREAD_MILLISECONDS = 60 * 1000;

/**
 * A shared secret from a store (Secrets Manager) that picks up a rotation without a cold
 * start: a delivery with another secret reads it again, at most once per
 * `SECRET_REREAD_MILLISECONDS`, so forged requests cannot turn into a read each (cost, and
 * the store's request quota).
 */
export class RereadableSharedSecret implements SharedSecretAuth {
  readonly mode = 'shared-secret';
  secret: string;
  readonly #read: () => Promise<string>;
  readonly #interval: number;
  readonly #now: () => number;
  #lastRead = Number.NEGATIVE_INFINITY;
  #pending: Promise<void> | undefined;

  constructor(
    secret: string,
    read: () => Promise<string>,
    options: { intervalMilliseconds?: number; now?: () => number } = {},
  ) {
    this.secret = secret;
    this.#read = read;
    this.#interval = options.intervalMilliseconds ?? SECRET_REREAD_MILLISECONDS;
    this.#now = options.now ?? Date.now;
  }

  reread(): Promise<void> {
    if (this.#pending) return this.#pending;
    if (this.#now() - this.#lastRead < this.#interval) return Promise.resolve();
    this.#lastRead = this.#now();
    this.#pending = (async () => {
      try {
        this.secret = await this.#read();
      } finally {
        this.#pending = undefined;
      }
    })();
    return this.#pending;
  }
}

export interface DeliveryCredentials {
  /** Header names in lower case. */
  headers: Record<string, string | undefined>;
  query: Record<string, string | undefined>;
}

/**
 * A refused delivery says whether it was certainly not Event Grid's (`retryable: false`: a
 * missing, wrong or forged credential) or could not be checked (`retryable: true`: the
 * tenant's signing keys could not be fetched), so the webhook answers 401 or 503.
 */
export type AuthResult = { ok: true } | { ok: false; reason: string; retryable: boolean };

/**
 * The app role the webhook's Entra application defines and assigns to Event Grid's service
 * principal (and to the subscription's writer), as Microsoft's setup scripts do.
 * https://learn.microsoft.com/azure/event-grid/secure-webhook-delivery
 */
export const EVENT_GRID_ROLE = 'AzureEventGridSecureWebhookSubscriber';

/**
 * Event Grid's first-party application ids: Azure public cloud, Azure Government. Microsoft's
 * setup script lists these two and notes the id differs per cloud.
 * https://learn.microsoft.com/azure/event-grid/scripts/powershell-webhook-secure-delivery-microsoft-entra-app
 */
export const EVENT_GRID_APP_IDS: readonly string[] = [
  '4962773b-9cdb-44cf-a8bf-237846a00ab7',
  '54316b56-3481-47f9-8f30-0300f5542a7b',
];

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

/** The tenant's signing keys could not be had: the delivery could not be checked, not refused. */
export class SigningKeysUnavailableError extends RetryableError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SigningKeysUnavailableError';
  }
}

/**
 * Wraps a key source so that its failures to produce the key set (network, timeout, a non-200
 * answer, a malformed set) become `SigningKeysUnavailableError`. A token naming a key the set
 * lacks stays a refusal: the remote set fetches the keys again for an unknown kid first
 * (at most once per 30 s), which is how a rotated key is found.
 */
function keysOrUnavailable(keys: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await keys(header, token);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'ERR_JWKS_NO_MATCHING_KEY' || code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') {
        throw error;
      }
      const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new SigningKeysUnavailableError(
        `the tenant's signing keys could not be fetched (${what.slice(0, 200)})`,
        { cause: error },
      );
    }
  };
}

/** Why a verified token is not Event Grid's, or undefined when it is. */
function notEventGrid(payload: JWTPayload, appIds: readonly string[]): string | undefined {
  // Event Grid's token is an app-only token for the webhook's application: the app role
  // arrives in `roles`. Anyone in the tenant can get a token for that audience; only principals
  // assigned the role get the claim.
  const roles = payload.roles;
  if (!Array.isArray(roles) || !roles.includes(EVENT_GRID_ROLE)) {
    return `the token does not carry the app role ${EVENT_GRID_ROLE}`;
  }
  // The setup assigns the role to the subscription's writer too (a user or an app), so the
  // caller's application must be Event Grid's own: `azp` in v2 tokens, `appid` in v1.
  // https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference
  const caller =
    typeof payload.azp === 'string'
      ? payload.azp
      : typeof payload.appid === 'string'
        ? payload.appid
        : undefined;
  if (caller === undefined) {
    return 'the token names no calling application (azp or appid), so not Event Grid';
  }
  if (!appIds.includes(caller)) {
    return `the token was issued to application ${caller}, not to Event Grid`;
  }
  return undefined;
}

/** Compares secrets in constant time, whatever their lengths. */
export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * Checks one delivery: a Microsoft Entra ID bearer token (signature against the tenant's keys,
 * issuer of that tenant in v1 or v2 form, audience, expiry, the app role `EVENT_GRID_ROLE`,
 * Event Grid's application as the caller), or a shared secret, or nothing when the
 * configuration says so. The reason never contains the token or the secret; `retryable` says
 * the keys to check the token could not be had.
 */
export async function authenticateDelivery(
  auth: DeliveryAuth,
  credentials: DeliveryCredentials,
): Promise<AuthResult> {
  if (auth.mode === 'none') return { ok: true };
  if (auth.mode === 'shared-secret') {
    const given = credentials.headers[SECRET_HEADER] ?? credentials.query[SECRET_QUERY];
    if (given === undefined) {
      return { ok: false, reason: 'no shared secret in the request', retryable: false };
    }
    if (secretsEqual(given, auth.secret)) return { ok: true };
    if (auth.reread) {
      const before = auth.secret;
      try {
        await auth.reread();
      } catch {
        return {
          ok: false,
          reason:
            'wrong shared secret, and the secret could not be read again to see if it was rotated',
          retryable: true,
        };
      }
      if (auth.secret !== before && secretsEqual(given, auth.secret)) return { ok: true };
    }
    return { ok: false, reason: 'wrong shared secret', retryable: false };
  }
  const header = credentials.headers.authorization;
  const token = header?.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : undefined;
  if (!token) return { ok: false, reason: 'no bearer token', retryable: false };
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(
      token,
      keysOrUnavailable(auth.keys ?? tenantKeys(auth.tenantId)),
      {
        issuer: [
          `https://login.microsoftonline.com/${auth.tenantId}/v2.0`,
          `https://sts.windows.net/${auth.tenantId}/`,
        ],
        audience: auth.audience,
        // Entra signs with RS256.
        algorithms: ['RS256'],
        clockTolerance: 60,
      },
    ));
  } catch (error) {
    if (error instanceof SigningKeysUnavailableError) {
      return { ok: false, reason: error.message, retryable: true };
    }
    const code = (error as { code?: string }).code ?? 'ERR_JWT_INVALID';
    return { ok: false, reason: `bearer token refused (${code})`, retryable: false };
  }
  const refused = notEventGrid(payload, auth.eventGridAppIds ?? EVENT_GRID_APP_IDS);
  return refused === undefined ? { ok: true } : { ok: false, reason: refused, retryable: false };
}
