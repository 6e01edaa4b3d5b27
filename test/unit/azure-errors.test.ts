import { describe, expect, it } from 'vitest';
import {
  CredentialRefusedError,
  PermanentError,
  PreconditionFailedError,
  PullUnsupportedError,
  RetryableError,
} from '../../src/errors.ts';
import { classifyAzureError, classifyAzurePullError } from '../../src/stores/azure-errors.ts';

/** An error shaped as @azure/storage-blob throws it (RestError with parsed details). */
function restError(
  statusCode: number,
  errorCode: string,
  source?: { status: number; code?: string; message?: string },
) {
  return {
    name: 'RestError',
    statusCode,
    code: errorCode,
    details: {
      errorCode,
      ...(source && {
        copySourceStatusCode: source.status,
        copySourceErrorCode: source.code,
        copySourceErrorMessage: source.message,
      }),
    },
  };
}

describe('Function: classifyAzureError', () => {
  it.each([
    ['SnapshotsPresent', 409, PermanentError],
    ['BlobImmutableDueToPolicy', 409, PermanentError],
    ['BlobOperationNotSupported', 409, PermanentError],
    ['LeaseIdMissing', 412, RetryableError],
    ['LeaseAlreadyPresent', 409, RetryableError],
    ['ConditionNotMet', 412, PreconditionFailedError],
    ['AuthenticationFailed', 403, CredentialRefusedError],
    ['InvalidAuthenticationInfo', 401, CredentialRefusedError],
    ['NoAuthenticationInformation', 401, CredentialRefusedError],
    ['PendingCopyOperation', 409, RetryableError],
    ['SnapshotOperationRateExceeded', 409, RetryableError],
    ['BlobAlreadyExists', 409, PreconditionFailedError],
    ['ServerBusy', 503, RetryableError],
  ] as const)('classes %s (%d) as %o', (code, status, kind) => {
    const classified = classifyAzureError(restError(status, code), 'az://c/k');
    expect(classified).toBeInstanceOf(kind);
    if (kind === PermanentError) expect(classified.retryable).toBe(false);
  });

  it('tells a refused credential (worth reading its secret again) from a missing permission', () => {
    // @azure/identity's error when Entra ID refuses a service principal's client secret.
    const entra = Object.assign(new Error('AADSTS7000215: Invalid client secret provided.'), {
      name: 'AuthenticationError',
      statusCode: 401,
    });
    expect(classifyAzureError(entra, 'az://c/k')).toBeInstanceOf(CredentialRefusedError);
    const permission = classifyAzureError(
      restError(403, 'AuthorizationPermissionMismatch'),
      'az://c/k',
    );
    expect(permission).toBeInstanceOf(PermanentError);
    expect(permission).not.toBeInstanceOf(CredentialRefusedError);
  });

  it('never classes a failed pull as a reason to stop pulling outside a pull', () => {
    const classified = classifyAzureError(restError(501, 'NotImplemented'), 'az://c/k');
    expect(classified).not.toBeInstanceOf(PullUnsupportedError);
    expect(classified).toBeInstanceOf(PermanentError);
  });
});

describe('Function: classifyAzurePullError', () => {
  it.each([
    ['the emulator cannot pull at all', restError(501, 'NotImplemented')],
    [
      'the source refuses the account (403)',
      restError(403, 'CannotVerifyCopySource', {
        status: 403,
        code: 'AccessDenied',
        message: 'Access Denied',
      }),
    ],
    ['the source cannot be reached at all', restError(500, 'CannotVerifyCopySource')],
  ])('stops pulling when %s', (_label, error) => {
    expect(classifyAzurePullError(error, 'az://c/k')).toBeInstanceOf(PullUnsupportedError);
  });

  it.each([
    [
      'the source is busy (503 SlowDown)',
      restError(503, 'CannotVerifyCopySource', {
        status: 503,
        code: 'SlowDown',
        message: 'Please reduce your request rate.',
      }),
    ],
    [
      'the source failed (500 InternalError)',
      restError(500, 'CannotVerifyCopySource', { status: 500, code: 'InternalError' }),
    ],
    [
      'the presigned URL expired',
      restError(403, 'CannotVerifyCopySource', {
        status: 403,
        code: 'AccessDenied',
        message: 'Request has expired',
      }),
    ],
    [
      "the presigning role's session expired",
      restError(400, 'CannotVerifyCopySource', {
        status: 400,
        code: 'ExpiredToken',
        message: 'The provided token has expired.',
      }),
    ],
    [
      'the source is gone (404)',
      restError(404, 'CannotVerifyCopySource', { status: 404, code: 'NoSuchKey' }),
    ],
    [
      'the source became shorter than the range (416)',
      restError(416, 'CannotVerifyCopySource', { status: 416, code: 'InvalidRange' }),
    ],
    ['Azure itself is busy', restError(503, 'ServerBusy')],
  ])('retries, and keeps pulling, when %s', (_label, error) => {
    const classified = classifyAzurePullError(error, 'az://c/k');
    expect(classified).toBeInstanceOf(RetryableError);
  });
});
