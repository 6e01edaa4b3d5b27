import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { PermanentError, RetryableError } from '../errors.ts';

/** Where secrets come from; AWS Secrets Manager in Lambda. */
export interface SecretSource {
  /** The secret's string value. Errors name the ARN, never the value. */
  get(arn: string): Promise<string>;
}

// Rotated secrets take effect within this long without a cold start.
const CACHE_MILLISECONDS = 15 * 60 * 1000;

/** Reads secrets from AWS Secrets Manager, caching each for 15 minutes. */
export class SecretsManagerSource implements SecretSource {
  readonly #client: SecretsManagerClient;
  readonly #cache = new Map<string, { value: Promise<string>; at: number }>();

  constructor(client: SecretsManagerClient) {
    this.#client = client;
  }

  get(arn: string): Promise<string> {
    const cached = this.#cache.get(arn);
    if (cached && Date.now() - cached.at < CACHE_MILLISECONDS) return cached.value;
    const value = this.#read(arn);
    this.#cache.set(arn, { value, at: Date.now() });
    // A failed read is not cached: the next caller asks again.
    value.catch(() => this.#cache.delete(arn));
    return value;
  }

  async #read(arn: string): Promise<string> {
    try {
      const out = await this.#client.send(new GetSecretValueCommand({ SecretId: arn }));
      if (out.SecretString !== undefined) return out.SecretString;
      if (out.SecretBinary !== undefined) return Buffer.from(out.SecretBinary).toString('utf8');
      throw new PermanentError(`the secret ${arn} has no value`);
    } catch (error) {
      if (error instanceof PermanentError) throw error;
      const sdk = error as {
        name?: string;
        $fault?: string;
        $metadata?: { httpStatusCode?: number };
      };
      const what = `reading the secret ${arn}: ${sdk.name ?? 'error'}`;
      // Not found, access denied, bad ARN: configuration, which a retry does not fix.
      if (
        sdk.$fault === 'client' &&
        sdk.$metadata?.httpStatusCode !== 429 &&
        !/Throttl/i.test(sdk.name ?? '')
      )
        throw new PermanentError(what, { cause: error });
      throw new RetryableError(what, { cause: error });
    }
  }
}
