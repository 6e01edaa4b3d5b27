/**
 * Errors say what happens next. The adapter that saw the failure classifies it; the queue
 * layer and the CLI decide retry vs dead letter vs exit from `kind` alone.
 */
export type ErrorKind = 'retryable' | 'permanent' | 'precondition-failed' | 'not-found';

/** Base error of the project. `kind` says what the caller should do next. */
export class ReplicatorError extends Error {
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
    this.name = 'ReplicatorError';
  }

  /** True when trying the same thing again later can succeed. */
  get retryable(): boolean {
    return this.kind === 'retryable';
  }
}

/** A transient failure: throttling, a 5xx, a reset connection. Try again later. */
export class RetryableError extends ReplicatorError {
  constructor(message: string, options?: ErrorOptions) {
    super('retryable', message, options);
    this.name = 'RetryableError';
  }
}

/** A failure that will not go away by itself: access denied, bad configuration, bad input. */
export class PermanentError extends ReplicatorError {
  constructor(message: string, options?: ErrorOptions) {
    super('permanent', message, options);
    this.name = 'PermanentError';
  }
}

/** A conditional request failed: the object is not in the state the caller assumed. */
export class PreconditionFailedError extends ReplicatorError {
  constructor(message: string, options?: ErrorOptions) {
    super('precondition-failed', message, options);
    this.name = 'PreconditionFailedError';
  }
}

/** The object, bucket or container does not exist. */
export class NotFoundError extends ReplicatorError {
  constructor(message: string, options?: ErrorOptions) {
    super('not-found', message, options);
    this.name = 'NotFoundError';
  }
}

/**
 * The store refused the credential itself (a wrong, expired or revoked key, SAS or client
 * secret), as opposed to a credential without the permission. A credential read from a secret
 * store may have been rotated: the caller may read it again once before giving up.
 */
export class CredentialRefusedError extends PermanentError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CredentialRefusedError';
  }
}

/** Metadata or a name that the destination store cannot represent without changing it. */
export class UnrepresentableError extends PermanentError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UnrepresentableError';
  }
}

/** The destination could not pull from the source URL; the caller streams instead. */
export class PullUnsupportedError extends PermanentError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PullUnsupportedError';
  }
}

/** Bad command-line arguments or configuration values. */
export class UsageError extends PermanentError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UsageError';
  }
}

/**
 * Whether a failed AWS SDK call was refused as the caller's fault (not found, access denied, a
 * malformed request): sending it again gets the same answer. Throttling (429, `Throttl…`) is a
 * client fault that passes, and network and service faults pass.
 */
export function isAwsCallersFault(error: unknown): boolean {
  const sdk = error as { name?: string; $fault?: string; $metadata?: { httpStatusCode?: number } };
  return (
    sdk.$fault === 'client' &&
    sdk.$metadata?.httpStatusCode !== 429 &&
    !/Throttl/i.test(sdk.name ?? '')
  );
}

/** Wraps anything that is not already a ReplicatorError as a retryable one, keeping the cause. */
export function asReplicatorError(error: unknown): ReplicatorError {
  if (error instanceof ReplicatorError) return error;
  if (error instanceof Error && error.name === 'AbortError') {
    return new RetryableError('the operation was aborted', { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new RetryableError(message, { cause: error });
}
