import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { PermanentError } from '../errors.ts';
import { awsCallError } from './aws-call-error.ts';

/** Where secrets come from; AWS Secrets Manager in Lambda. */
export interface SecretSource {
  /** The secret's string value. Errors name the ARN, never the value. */
  get(arn: string): Promise<string>;
  /**
   * The secret's value read again now, bypassing any cache (and replacing what it holds), for
   * when a credential from it was refused: the secret may have been rotated.
   */
  refresh?(arn: string): Promise<string>;
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
    return this.refresh(arn);
  }

  refresh(arn: string): Promise<string> {
    const value = this.#read(arn);
    const entry = { value, at: Date.now() };
    this.#cache.set(arn, entry);
    // A failed read is not cached: the next caller asks again.
    value.catch(() => {
      if (this.#cache.get(arn) === entry) this.#cache.delete(arn);
    });
    return value;
  }

  async #read(arn: string): Promise<string> {
    try {
      // The SDK is loaded by the first read (the client is built then too, see runtime.ts).
      const { GetSecretValueCommand } = await import('@aws-sdk/client-secrets-manager');
      const out = await this.#client.send(new GetSecretValueCommand({ SecretId: arn }));
      if (out.SecretString !== undefined) return out.SecretString;
      if (out.SecretBinary !== undefined) return Buffer.from(out.SecretBinary).toString('utf8');
      throw new PermanentError(`the secret ${arn} has no value`);
    } catch (error) {
      throw awsCallError(error, `reading the secret ${arn}`);
    }
  }
}
