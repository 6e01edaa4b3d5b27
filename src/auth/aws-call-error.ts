import {
  isAwsCallersFault,
  PermanentError,
  type ReplicatorError,
  RetryableError,
} from '../errors.ts';

/**
 * Classifies a failed AWS SDK call (STS, Secrets Manager): the caller's fault (not found,
 * access denied, a bad ARN) is configuration, which no retry fixes; throttling, network and
 * service faults pass. The message says what was being done and the error's name, never a
 * value.
 */
export function awsCallError(error: unknown, what: string): ReplicatorError {
  if (error instanceof PermanentError) return error;
  const message = `${what}: ${(error as { name?: string }).name ?? 'error'}`;
  return isAwsCallersFault(error)
    ? new PermanentError(message, { cause: error })
    : new RetryableError(message, { cause: error });
}
