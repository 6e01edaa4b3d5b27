/** The part of fauxqs 1.9's `SqsQueue` that long polling goes through. */
interface PollingQueue {
  pollWaiters: Array<{ resolve: () => void; timer: NodeJS.Timeout }>;
  messages: unknown[];
  isFifo(): boolean;
  hasAvailableFifoMessages(): boolean;
  dequeue(...args: unknown[]): unknown[];
  waitForMessages(waitTimeSeconds: number): Promise<void>;
  notifyWaiters(): void;
  cancelWaiters(): void;
}

interface QueueClass {
  prototype: PollingQueue;
}

/** Times `cancelWaiters` ran on a queue (a purge, a deleted queue, shutdown). */
const cancellations = new WeakMap<PollingQueue, number>();
const patched = new WeakSet<object>();

function hasReadyMessages(queue: PollingQueue): boolean {
  return queue.isFifo() ? queue.hasAvailableFifoMessages() : queue.messages.length > 0;
}

function wakeOne(queue: PollingQueue): void {
  const waiter = queue.pollWaiters.shift();
  if (!waiter) return;
  clearTimeout(waiter.timer);
  waiter.resolve();
}

/**
 * Makes fauxqs's long polling answer as SQS does. A ReceiveMessage that waits "returns sooner
 * than WaitTimeSeconds" when a message is available and returns no messages only when "the
 * wait time expires" (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html).
 * fauxqs 1.9 wakes every waiting receive when one message arrives; all but one then answer
 * empty at once, and each poller sends another request: about one empty receive per message
 * that a real queue would not answer. Here one waiting receive is woken at a time, the next
 * only while messages are left after it took its share, and a receive woken with nothing
 * left waits on for the rest of its time.
 */
export async function pollLikeSqs(): Promise<void> {
  const url = new URL('./sqs/sqsStore.js', import.meta.resolve('fauxqs'));
  const module = (await import(url.href)) as { SqsQueue?: QueueClass };
  const prototype = module.SqsQueue?.prototype;
  if (
    !prototype ||
    typeof prototype.waitForMessages !== 'function' ||
    typeof prototype.dequeue !== 'function' ||
    typeof prototype.notifyWaiters !== 'function' ||
    typeof prototype.cancelWaiters !== 'function'
  ) {
    throw new Error(
      `fauxqs has no SqsQueue at ${url.href}; this emulator is written for fauxqs 1.9`,
    );
  }
  if (patched.has(prototype)) return;
  patched.add(prototype);
  const wait = prototype.waitForMessages;
  const dequeue = prototype.dequeue;
  const cancel = prototype.cancelWaiters;

  prototype.notifyWaiters = function notifyWaiters(this: PollingQueue) {
    wakeOne(this);
  };
  prototype.dequeue = function dequeueAndPass(this: PollingQueue, ...args: unknown[]) {
    const taken = dequeue.apply(this, args);
    // What this receive left is the next waiting receive's.
    if (this.pollWaiters.length > 0 && hasReadyMessages(this)) wakeOne(this);
    return taken;
  };
  prototype.cancelWaiters = function cancelWaiters(this: PollingQueue) {
    cancellations.set(this, (cancellations.get(this) ?? 0) + 1);
    cancel.call(this);
  };
  prototype.waitForMessages = async function waitForMessages(
    this: PollingQueue,
    waitTimeSeconds: number,
  ) {
    const ends = Date.now() + waitTimeSeconds * 1000;
    const cancelled = cancellations.get(this) ?? 0;
    await wait.call(this, waitTimeSeconds);
    while (
      !hasReadyMessages(this) &&
      (cancellations.get(this) ?? 0) === cancelled &&
      Date.now() < ends
    ) {
      await wait.call(this, (ends - Date.now()) / 1000);
    }
  };
}
