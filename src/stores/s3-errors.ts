import {
  NotFoundError,
  PermanentError,
  PreconditionFailedError,
  type ReplicatorError,
  RetryableError,
} from '../errors.ts';

interface SdkErrorShape {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: 'client' | 'server';
}

const NOT_FOUND_CODES = new Set(['NoSuchKey', 'NotFound', 'NoSuchBucket', 'NoSuchUpload']);
const ACCESS_CODES = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'AllAccessDisabled',
  'AccountProblem',
]);
// Corruption in transit: sending the same bytes again is the fix.
const RETRYABLE_CODES = new Set([
  'BadDigest',
  'InvalidDigest',
  'SlowDown',
  'RequestTimeout',
  'InternalError',
  'ServiceUnavailable',
  'ThrottlingException',
  'TimeoutError',
  'RequestTimeTooSkewed',
  // S3 answers 409 to two conditional writes racing on one key; the loser may retry.
  'ConditionalRequestConflict',
  'OperationAborted',
]);
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

/** The S3 error code of an SDK error (`NoSuchKey`, `NoSuchBucket`, …). */
export function s3ErrorCode(error: unknown): string {
  return codeOf((error ?? {}) as SdkErrorShape);
}

function codeOf(error: SdkErrorShape): string {
  return error.Code ?? error.name ?? error.code ?? 'Error';
}

/**
 * Classifies an error thrown by the AWS SDK for `what` (e.g. `s3://bucket/key`).
 * The message says what failed and what to do; it never carries request URLs or credentials.
 */
export function classifyS3Error(error: unknown, what: string): ReplicatorError {
  const e = (typeof error === 'object' && error !== null ? error : {}) as SdkErrorShape;
  const status = e.$metadata?.httpStatusCode;
  const code = codeOf(e);
  const options = { cause: error };

  if (code === 'AbortError') return new RetryableError(`${what}: aborted`, options);
  if (code === 'CredentialsProviderError') {
    return new PermanentError(
      `${what}: no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)`,
      options,
    );
  }
  if (status === 412 || code === 'PreconditionFailed') {
    return new PreconditionFailedError(
      `${what}: precondition failed (the object changed)`,
      options,
    );
  }
  if (NOT_FOUND_CODES.has(code) || status === 404) {
    const thing =
      code === 'NoSuchBucket'
        ? 'bucket does not exist'
        : code === 'NoSuchUpload'
          ? 'multipart upload no longer exists'
          : 'not found';
    return new NotFoundError(`${what}: ${thing}`, options);
  }
  if (ACCESS_CODES.has(code) || status === 403) {
    return new PermanentError(
      `${what}: access denied (${code}); check the AWS credentials and the bucket policy`,
      options,
    );
  }
  if (code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed' || status === 301) {
    return new PermanentError(
      `${what}: the bucket is in another region (${code}); set AWS_REGION to the bucket's region`,
      options,
    );
  }
  if (RETRYABLE_CODES.has(code) || NETWORK_CODES.has(code) || status === 429) {
    return new RetryableError(`${what}: ${code}${e.message ? `: ${e.message}` : ''}`, options);
  }
  if (status !== undefined && status >= 500) {
    return new RetryableError(`${what}: S3 answered ${status} ${code}`, options);
  }
  if (status !== undefined && status >= 400) {
    return new PermanentError(`${what}: ${code}${e.message ? `: ${e.message}` : ''}`, options);
  }
  if (e.$fault === 'client' && status === undefined && !NETWORK_CODES.has(code)) {
    // A client-side failure before any response (bad input to the SDK) does not fix itself.
    if (code === 'TypeError' || code === 'RangeError') {
      return new PermanentError(`${what}: ${e.message ?? code}`, options);
    }
  }
  return new RetryableError(`${what}: ${e.message ?? code}`, options);
}
