/**
 * Every time limit of the pipeline, sized together in one place, so retries never stack:
 *
 * - A copy Lambda runs at most COPY_TIMEOUT_SECONDS; it stops starting new ranges
 *   COPY_STOP_MARGIN_SECONDS before that and re-enqueues the rest (the staged parts are the
 *   checkpoint), so one invocation never outlives its message's visibility.
 * - The tasks queue's visibility timeout is 6x the function timeout (AWS's guidance for SQS
 *   event sources, which batch and retry invocations).
 * - The SDKs make SDK_ATTEMPTS attempts per request; the engine retries a failed range at most
 *   PART_ATTEMPTS times; a failed message then waits `retryDelaySeconds` before it is
 *   received again, and after MAX_RECEIVES receives SQS moves it to the dead-letter queue.
 */
export const COPY_TIMEOUT_SECONDS = 900;
export const COPY_STOP_MARGIN_SECONDS = 60;
export const TASKS_VISIBILITY_TIMEOUT_SECONDS = 6 * COPY_TIMEOUT_SECONDS;
export const SDK_ATTEMPTS = 3;
export const PART_ATTEMPTS = 3;
export const MAX_RECEIVES = 8;
export const RETRY_BASE_SECONDS = 30;
// SQS allows a visibility timeout of at most 12 hours; an hour keeps a stuck key moving.
export const RETRY_CAP_SECONDS = 3600;

/**
 * How long a failed message stays invisible before its next attempt: exponential in the
 * receive count (1 -> 30 s, 2 -> 60 s, 3 -> 120 s, …), capped at an hour.
 */
export function retryDelaySeconds(
  receiveCount: number,
  baseSeconds: number = RETRY_BASE_SECONDS,
): number {
  const attempt = Math.max(1, Math.floor(receiveCount));
  return Math.min(RETRY_CAP_SECONDS, baseSeconds * 2 ** Math.min(attempt - 1, 20));
}
