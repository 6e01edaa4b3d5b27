import type { RunningEmulators } from '../../src/local/emulators.ts';
import { startLocalMirror } from '../../src/local/mirror.ts';
import { taskFactOf } from './crash.ts';

/**
 * The replicator of a crash run, as a process of its own (see crash.ts): the local mirror on
 * emulators the parent keeps running, so that killing this process with SIGKILL kills the
 * runners, the copies and the webhook, and leaves the stores and queues as they were. Its
 * setup comes as JSON in `S3AZ_CRASH_SETUP`. It writes one JSON line per fact on stdout:
 * `{"ready":…}` with the queues, `{"task":…}` per task report, `{"webhook":"start"|"end"}`.
 */
interface CrashSetup {
  emulators: Omit<RunningEmulators, 'stop' | 'eventGridPending'>;
  webhookPort: number;
  webhookSecret: string;
  visibilityTimeoutSeconds: number;
  deleteHoldSeconds: number;
}

const setup = JSON.parse(process.env.S3AZ_CRASH_SETUP ?? '') as CrashSetup;
const line = (fact: unknown) => process.stdout.write(`${JSON.stringify(fact)}\n`);
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';

const mirror = await startLocalMirror({
  // The parent owns the emulators: this process neither stops them nor asks them anything.
  emulators: {
    ...setup.emulators,
    eventGridPending: () => Promise.resolve(0),
    stop: () => Promise.resolve(),
  },
  webhookPort: setup.webhookPort,
  webhookSecret: setup.webhookSecret,
  visibilityTimeoutSeconds: setup.visibilityTimeoutSeconds,
  deleteHoldSeconds: setup.deleteHoldSeconds,
  onWebhook: (phase) => line({ webhook: phase }),
});
mirror.telemetry.onTask((report) => line(taskFactOf(report)));
line({ ready: true, queues: mirror.queues });
process.once('SIGTERM', () => {
  mirror.stop().finally(() => process.exit(0));
});
