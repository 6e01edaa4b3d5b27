import {
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
  details?: { errorCode?: string };
}

const ACCESS_CODES = new Set([
  'AuthenticationFailed',
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
  // If-None-Match: * on an existing blob answers 409 BlobAlreadyExists, not 412.
  if (status === 412 || code === 'ConditionNotMet' || code === 'BlobAlreadyExists') {
    return new PreconditionFailedError(`${what}: precondition failed (the blob changed)`, options);
  }
  if (code === 'CannotVerifyCopySource' || status === 501 || code === 'NotImplemented') {
    return new PullUnsupportedError(
      `${what}: the destination could not pull from the source URL (${code})`,
      options,
    );
  }
  if (status === 404 || code === 'BlobNotFound' || code === 'ContainerNotFound') {
    const thing = code === 'ContainerNotFound' ? 'container does not exist' : 'not found';
    return new NotFoundError(`${what}: ${thing}`, options);
  }
  if (ACCESS_CODES.has(code) || status === 403) {
    return new PermanentError(
      `${what}: access denied (${code}); check the Azure credentials and their role on the container`,
      options,
    );
  }
  if (RETRYABLE_CODES.has(code) || status === 429 || status === 408) {
    return new RetryableError(`${what}: ${code}`, options);
  }
  if (status !== undefined && status >= 500) {
    return new RetryableError(`${what}: Azure answered ${status} ${code}`, options);
  }
  if (status === 409) {
    // Leases and pending copies clear by themselves.
    return new RetryableError(`${what}: conflict (${code})`, options);
  }
  if (status !== undefined && status >= 400) {
    return new PermanentError(`${what}: ${code}`, options);
  }
  return new RetryableError(`${what}: ${e.message ?? code}`, options);
}
