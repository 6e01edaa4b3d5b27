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
 *   received again, and on its MAX_RECEIVES-th receive the task goes to the dead-letter queue
 *   with its last error (SQS's redrive policy, with the same count, catches crashed invocations).
 *
 * serverless.yml reads these numbers (through `dist/serverless-vars.cjs`), so the deployed
 * queues and functions cannot disagree with the code.
 */
export const COPY_TIMEOUT_SECONDS = 900;
/**
 * The plan step lists directories, and copies objects of up to 1 MiB (each bounded by the stop
 * margin below), at most; five minutes is ample.
 */
export const PLAN_TIMEOUT_SECONDS = 300;
/**
 * The plan step lists no new page of a directory this long before its timeout: the rest goes
 * on in a follow-up message, after the tasks so far are sent (10,000 at most per message).
 */
export const PLAN_STOP_MARGIN_SECONDS = 90;
export const EVENTS_VISIBILITY_TIMEOUT_SECONDS = 6 * PLAN_TIMEOUT_SECONDS;
/**
 * The redrive function (invoked by hand) reads the dead-letter queues and sends back to the
 * work queues; the reconcile function (on a schedule, or by hand) lists the rules' buckets and
 * containers and sends tasks: list and send, like the plan step, and sized like it.
 */
export const REDRIVE_TIMEOUT_SECONDS = PLAN_TIMEOUT_SECONDS;
export const RECONCILE_TIMEOUT_SECONDS = PLAN_TIMEOUT_SECONDS;
/** API Gateway HTTP APIs wait at most 30 s for an integration. */
export const WEBHOOK_TIMEOUT_SECONDS = 29;
/** The copy function's memory in MB by default; each copy of a batch plans within its share. */
export const COPY_MEMORY_MB = 2048;
/** Records per copy invocation: copies of one batch run side by side and share its memory. */
export const COPY_BATCH_SIZE = 4;
export const PLAN_BATCH_SIZE = 10;
/** Dead letters are kept for the longest time SQS allows (14 days), for inspection and redrive. */
export const DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600;
export const COPY_STOP_MARGIN_SECONDS = 60;
export const TASKS_VISIBILITY_TIMEOUT_SECONDS = 6 * COPY_TIMEOUT_SECONDS;
export const SDK_ATTEMPTS = 3;
export const PART_ATTEMPTS = 3;
export const MAX_RECEIVES = 8;
/**
 * Most times one copy is continued in a new invocation (each stop re-sends its message with
 * the count) before it goes to the dead-letter queue as `too-many-continuations`. 600 runs of
 * COPY_TIMEOUT_SECONDS - COPY_STOP_MARGIN_SECONDS (840 s) copy for about 5.8 days: within the
 * week Azure keeps uncommitted blocks, and enough for a 5 TiB object (S3's largest) at about
 * 11 MiB/s (5 TiB / 600 runs = 8.7 GiB a run). A copy slower than that is not going to finish.
 */
export const MAX_CONTINUATIONS = 600;
/**
 * A fanned-out copy's finishing task checks its upload FAN_OUT_FIRST_CHECK_SECONDS after the
 * start, then at twice the interval each time up to FAN_OUT_CHECK_SECONDS (an SQS delay, at
 * most 900 s). After FAN_OUT_QUIET_CHECKS checks in a row without a new part (20
 * minutes: longer than a range task's invocation, so a running one shows progress first) it
 * sends the missing ranges again; after FAN_OUT_MAX_REISSUES of those without progress it
 * dead-letters. FAN_OUT_MAX_CHECKS (7 days of checks) stays within the week Azure keeps
 * uncommitted blocks.
 */
export const FAN_OUT_FIRST_CHECK_SECONDS = 10;
export const FAN_OUT_CHECK_SECONDS = 60;
export const FAN_OUT_QUIET_CHECKS = 20;
export const FAN_OUT_MAX_REISSUES = 3;
export const FAN_OUT_MAX_CHECKS = (7 * 24 * 3600) / FAN_OUT_CHECK_SECONDS;
/**
 * How long a delete in doubt waits before it goes ahead (see `decide`): the other side holds a
 * version that may have been written after the delete (in the delete's second, or an S3
 * multipart object, which S3 dates from its upload's start). A version written after the
 * delete has its own event, whose task carries it across in the meantime. That event may be
 * late: S3 notifications come "typically in seconds but can sometimes take a minute or longer"
 * (https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventNotifications.html), and Event
 * Grid retries a delivery the webhook missed after 10 s, 30 s, 1 min and 5 min
 * (https://learn.microsoft.com/azure/event-grid/delivery-and-retry): 400 s for four misses.
 * Its task may fail and wait RETRY_BASE_SECONDS, then twice that, and so on. Fifteen minutes
 * covers four delivery misses and three task retries (400 + 30 + 60 + 120 s, with the copies'
 * own time); a delete that waits longer is mirrored later still.
 */
export const DELETE_HOLD_SECONDS = 900;
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
