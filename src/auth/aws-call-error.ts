import { PermanentError, type ReplicatorError, RetryableError } from '../errors.ts';

/**
 * Classifies a failed AWS SDK call (STS, Secrets Manager): the caller's fault (not found,
 * access denied, a bad ARN) is configuration, which no retry fixes; throttling, network and
 * service faults pass. The message says what was being done and the error's name, never a
 * value.
 */
export function awsCallError(error: unknown, what: string): ReplicatorError {
  if (error instanceof PermanentError) return error;
  const sdk = error as { name?: string; $fault?: string; $metadata?: { httpStatusCode?: number } };
  const message = `${what}: ${sdk.name ?? 'error'}`;
  const callersFault =
    sdk.$fault === 'client' &&
    sdk.$metadata?.httpStatusCode !== 429 &&
    !/Throttl/i.test(sdk.name ?? '');
  return callersFault
    ? new PermanentError(message, { cause: error })
    : new RetryableError(message, { cause: error });
}
