/** A waiting receive as fauxqs 1.9's `SqsQueue` keeps it. */
interface PollWaiter {
  resolve: () => void;
  timer: NodeJS.Timeout;
}

/** The part of fauxqs 1.9's `SqsQueue` that long polling goes through. */
interface PollingQueue {
  pollWaiters: PollWaiter[];
  messages: unknown[];
  isFifo(): boolean;
  hasAvailableFifoMessages(): boolean;
  dequeue(...args: unknown[]): unknown[];
  waitForMessages(waitTimeSeconds: number): Promise<void>;
  notifyWaiters(): void;
  cancelWaiters(): void;
  startPollTimerIfNeeded(): void;
  stopPollTimerIfEmpty(): void;
}

interface QueueClass {
  prototype: PollingQueue;
}

/** Times `cancelWaiters` ran on a queue (a deleted queue, shutdown): every wait ends. */
const cancellations = new WeakMap<PollingQueue, number>();
/** Queues with a woken receive that has not taken its messages yet. */
const handing = new WeakSet<PollingQueue>();
const patched = new WeakSet<object>();

function hasReadyMessages(queue: PollingQueue): boolean {
  return queue.isFifo() ? queue.hasAvailableFifoMessages() : queue.messages.length > 0;
}

function wakeOne(queue: PollingQueue): void {
  const waiter = queue.pollWaiters.shift();
  if (!waiter) return;
  handing.add(queue);
  clearTimeout(waiter.timer);
  waiter.resolve();
}

/**
 * Makes fauxqs's long polling answer as SQS does. A ReceiveMessage that waits "returns sooner
 * than WaitTimeSeconds" when a message is available and returns no messages only when "the
 * wait time expires" (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html).
 * fauxqs 1.9 wakes every waiting receive when a message arrives; all but one then answer
 * empty at once, and each poller sends another request: about one empty receive per message
 * that a real queue would not answer. Here one waiting receive is woken at a time: messages
 * that arrive before it has taken its share (a SendMessageBatch enqueues one by one) wake no
 * one else, and what it leaves wakes the next. A receive woken with nothing to take (a FIFO
 * group locked meanwhile) waits on for the rest of its time.
 */
export async function pollLikeSqs(): Promise<void> {
  const url = new URL('./sqs/sqsStore.js', import.meta.resolve('fauxqs'));
  const module = (await import(url.href)) as { SqsQueue?: QueueClass };
  const prototype = module.SqsQueue?.prototype;
  if (
    !prototype ||
    typeof prototype.dequeue !== 'function' ||
    typeof prototype.cancelWaiters !== 'function' ||
    typeof prototype.startPollTimerIfNeeded !== 'function' ||
    typeof prototype.stopPollTimerIfEmpty !== 'function'
  ) {
    throw new Error(
      `fauxqs has no SqsQueue at ${url.href}; this emulator is written for fauxqs 1.9`,
    );
  }
  if (patched.has(prototype)) return;
  patched.add(prototype);
  const dequeue = prototype.dequeue;
  const cancel = prototype.cancelWaiters;

  prototype.notifyWaiters = function notifyWaiters(this: PollingQueue) {
    if (!handing.has(this)) wakeOne(this);
  };
  prototype.dequeue = function dequeueAndHandOn(this: PollingQueue, ...args: unknown[]) {
    const taken = dequeue.apply(this, args);
    handing.delete(this);
    // What this receive left is the next waiting receive's.
    if (this.pollWaiters.length > 0 && hasReadyMessages(this)) wakeOne(this);
    return taken;
  };
  prototype.cancelWaiters = function cancelWaiters(this: PollingQueue) {
    cancellations.set(this, (cancellations.get(this) ?? 0) + 1);
    handing.delete(this);
    cancel.call(this);
  };
  prototype.waitForMessages = async function waitForMessages(
    this: PollingQueue,
    waitTimeSeconds: number,
  ) {
    const ends = Date.now() + waitTimeSeconds * 1000;
    const cancelled = cancellations.get(this) ?? 0;
    for (;;) {
      const woken = await new Promise<boolean>((resolve) => {
        const waiter: PollWaiter = {
          resolve: () => resolve(true),
          timer: setTimeout(
            () => {
              const index = this.pollWaiters.indexOf(waiter);
              if (index !== -1) this.pollWaiters.splice(index, 1);
              resolve(false);
            },
            Math.max(0, ends - Date.now()),
          ),
        };
        this.pollWaiters.push(waiter);
        this.startPollTimerIfNeeded();
      });
      this.stopPollTimerIfEmpty();
      // The receive takes its messages (dequeue) in the same tick, and hands on what it leaves.
      if (!woken || (cancellations.get(this) ?? 0) !== cancelled || hasReadyMessages(this)) return;
      // Woken with nothing to take: the next arrival may wake another receive, or this one.
      handing.delete(this);
      if (Date.now() >= ends) return;
    }
  };
}
