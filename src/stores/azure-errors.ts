import {
  CredentialRefusedError,
  NotFoundError,
  PermanentError,
  PreconditionFailedError,
  PullUnsupportedError,
  type ReplicatorError,
  RetryableError,
} from '../errors.ts';

interface RestErrorShape {
  name?: string;
  code?: string;
  statusCode?: number;
  message?: string;
  details?: {
    errorCode?: string;
    /** What the copy source answered a pull (Put Blob From URL, Put Block From URL). */
    copySourceStatusCode?: number;
    copySourceErrorCode?: string;
    copySourceErrorMessage?: string;
  };
}

// The credential itself is wrong or expired (a rotated key, an expired SAS), as opposed to a
// credential without the role or permission. https://learn.microsoft.com/rest/api/storageservices/common-rest-api-error-codes
const REFUSED_CREDENTIAL_CODES = new Set([
  'AuthenticationFailed',
  'InvalidAuthenticationInfo',
  'NoAuthenticationInformation',
]);
const ACCESS_CODES = new Set([
  'AuthorizationFailure',
  'AuthorizationPermissionMismatch',
  'AuthorizationResourceTypeMismatch',
  'AuthorizationSourceIPMismatch',
  'AuthorizationProtocolMismatch',
  'AuthorizationServiceMismatch',
  'InsufficientAccountPermissions',
  'AccountIsDisabled',
]);
// Transport corruption or a busy service: the same request can succeed next time.
const RETRYABLE_CODES = new Set([
  'Md5Mismatch',
  'Crc64Mismatch',
  'InvalidMd5',
  'ServerBusy',
  'OperationTimedOut',
  'InternalError',
  'REQUEST_SEND_ERROR',
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

// Refusals that clear by themselves: another client's lease (at most 60 s unless infinite; a
// write without its id answers 412 LeaseIdMissing, not a changed blob), a pending copy, a
// container being deleted, the snapshot rate. Every other 409 is the blob's state
// (SnapshotsPresent, an immutability policy, an ADLS blob) and answers the same next time.
// https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes
const RETRYABLE_CONFLICTS = new Set([
  'LeaseIdMissing',
  'LeaseAlreadyPresent',
  'PendingCopyOperation',
  'ContainerBeingDeleted',
  'SnapshotOperationRateExceeded',
]);

function codeOf(error: RestErrorShape): string {
  return error.details?.errorCode ?? error.code ?? error.name ?? 'Error';
}

/** The Azure error code (`BlobNotFound`, `ContainerNotFound`, …) of an SDK error. */
export function azureErrorCode(error: unknown): string {
  return codeOf((typeof error === 'object' && error !== null ? error : {}) as RestErrorShape);
}

/**
 * Classifies an error thrown by @azure/storage-blob for `what` (e.g. `az://container/key`).
 * Error codes: https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes
 */
export function classifyAzureError(error: unknown, what: string): ReplicatorError {
  const e = (typeof error === 'object' && error !== null ? error : {}) as RestErrorShape;
  const status = e.statusCode;
  const code = codeOf(e);
  const options = { cause: error };

  if (code === 'AbortError' || e.name === 'AbortError') {
    return new RetryableError(`${what}: aborted`, options);
  }
  if (code === 'CredentialUnavailableError' || e.name === 'CredentialUnavailableError') {
    return new PermanentError(
      `${what}: no Azure credentials found (set AZURE_STORAGE_CONNECTION_STRING, or sign in for DefaultAzureCredential)`,
      options,
    );
  }
  if ((status === 409 || status === 412) && RETRYABLE_CONFLICTS.has(code)) {
    return new RetryableError(`${what}: conflict (${code})`, options);
  }
  // If-None-Match: * on an existing blob answers 409 BlobAlreadyExists, not 412.
  if (status === 412 || code === 'ConditionNotMet' || code === 'BlobAlreadyExists') {
    return new PreconditionFailedError(`${what}: precondition failed (the blob changed)`, options);
  }
  if (status === 404 || code === 'BlobNotFound' || code === 'ContainerNotFound') {
    const thing = code === 'ContainerNotFound' ? 'container does not exist' : 'not found';
    return new NotFoundError(`${what}: ${thing}`, options);
  }
  if (REFUSED_CREDENTIAL_CODES.has(code) || e.name === 'AuthenticationError') {
    // Entra ID refusing a service principal's secret (AADSTS7000215 invalid, AADSTS7000222
    // expired) surfaces as @azure/identity's AuthenticationError.
    return new CredentialRefusedError(
      `${what}: the Azure credential was refused (${code}); check the key, SAS or client secret and its expiry`,
      options,
    );
  }
  if (ACCESS_CODES.has(code) || status === 403) {
    return new PermanentError(
      `${what}: access denied (${code}); check the Azure credentials and their role on the container`,
      options,
    );
  }
  if (status === 501 || code === 'NotImplemented') {
    // An emulator (Azurite) without the operation answers the same next time.
    return new PermanentError(`${what}: the service does not implement this (${code})`, options);
  }
  if (RETRYABLE_CODES.has(code) || status === 429 || status === 408) {
    return new RetryableError(`${what}: ${code}`, options);
  }
  if (status !== undefined && status >= 500) {
    return new RetryableError(`${what}: Azure answered ${status} ${code}`, options);
  }
  if (status !== undefined && status >= 400) {
    return new PermanentError(`${what}: ${code}`, options);
  }
  return new RetryableError(`${what}: ${e.message ?? code}`, options);
}

// What S3 answers a presigned URL whose time is up (403 AccessDenied "Request has expired"), or
// whose signing session expired (400 ExpiredToken): a new URL, which the next attempt presigns,
// succeeds. https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
const EXPIRED_SOURCE_CODES = new Set(['ExpiredToken', 'TokenRefreshRequired']);

function isExpiredSource(code: string | undefined, message: string | undefined): boolean {
  return (
    (code !== undefined && EXPIRED_SOURCE_CODES.has(code)) ||
    /request has expired/i.test(message ?? '')
  );
}

/**
 * Classifies an error of a pull (Put Blob From URL, Put Block From URL) for `what`. Only a
 * definitive "this destination cannot pull from this source" is a `PullUnsupportedError`, which
 * makes the engine stream instead for a while: an emulator without the operation (501
 * NotImplemented), the source refusing the account (403, e.g. a bucket policy on addresses),
 * or no answer from the source at all. What the source answers otherwise (a 5xx, throttling,
 * an expired URL, a 404 while the object is changing) is classified as usual, so a transient
 * failure is retried, and pulled again.
 */
export function classifyAzurePullError(error: unknown, what: string): ReplicatorError {
  const e = (typeof error === 'object' && error !== null ? error : {}) as RestErrorShape;
  const code = codeOf(e);
  const options = { cause: error };
  if (e.statusCode === 501 || code === 'NotImplemented') {
    return new PullUnsupportedError(
      `${what}: the destination cannot pull from a URL (${code})`,
      options,
    );
  }
  if (code !== 'CannotVerifyCopySource') return classifyAzureError(error, what);
  // Azure answers with the source's status and error (x-ms-copy-source-status-code, -error-code,
  // CopySourceErrorMessage), or 500 with neither when the source gave no answer in time.
  // https://learn.microsoft.com/rest/api/storageservices/put-block-from-url
  // https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes
  const sourceStatus = e.details?.copySourceStatusCode;
  const sourceCode = e.details?.copySourceErrorCode;
  if (sourceStatus === undefined) {
    if (e.statusCode !== 500) return classifyAzureError(error, what);
    return new PullUnsupportedError(
      `${what}: the source cannot be reached from the destination's account (no answer)`,
      options,
    );
  }
  const answer = `${sourceStatus}${sourceCode ? ` ${sourceCode}` : ''}`;
  if (isExpiredSource(sourceCode, e.details?.copySourceErrorMessage)) {
    return new RetryableError(
      `${what}: the presigned source URL expired (${answer}); the next attempt presigns a new one`,
      options,
    );
  }
  if (sourceStatus === 403) {
    return new PullUnsupportedError(
      `${what}: the source refuses the destination's account (${answer})`,
      options,
    );
  }
  // A busy or failing source, or one that changes under the copy (404, or 416 for a range past
  // a new, shorter version), answers otherwise next time; the task then decides again.
  if (
    sourceStatus === 404 ||
    sourceStatus === 408 ||
    sourceStatus === 416 ||
    sourceStatus === 429 ||
    sourceStatus >= 500
  ) {
    return new RetryableError(`${what}: the copy source answered ${answer}`, options);
  }
  return new PermanentError(`${what}: the copy source answered ${answer}`, options);
}
