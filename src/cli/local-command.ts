import {
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { SECRET_HEADER } from '../auth/event-grid-auth.ts';
import { DIFFERENCE_KEPT } from '../core/decide.ts';
import { formatBytes } from '../core/range-plan.ts';
import { UsageError } from '../errors.ts';
import { type FaultProxy, parseFaultPlan } from '../local/fault-proxy.ts';
import { type LocalMirror, startLocalMirror } from '../local/mirror.ts';
import type { TaskReport } from '../observe/telemetry.ts';
import { type LocalState, writeLocalState } from '../ops/target.ts';

/** Event Grid's subscription handshake: the webhook answers `{"validationResponse":"hello"}`. */
const HANDSHAKE = [
  {
    id: 'try-1',
    eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
    eventTime: '2025-01-01T00:00:00Z',
    data: { validationCode: 'hello' },
  },
];

export interface LocalCommandOptions {
  s3Port: string;
  azurePort: string;
  webhookPort: string;
  bucket: string;
  container: string;
  data?: string;
  config?: string;
  faults?: string;
  json?: boolean;
}

function port(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new UsageError(`${name} must be a port number (0-65535), got "${text}"`);
  }
  return value;
}

/**
 * `s3az local`: the whole replicator on emulators (see startLocalMirror), the endpoints,
 * credentials and ready-to-paste examples printed, then one line per replicated change until
 * Ctrl-C.
 */
export async function runLocalCommand(options: LocalCommandOptions): Promise<void> {
  // EMF lines are for CloudWatch; here the per-change lines say what happened.
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  const faults = options.faults === undefined ? undefined : parseFaultPlan(options.faults);
  const mirror = await startLocalMirror({
    ...(faults && { faults }),
    s3Port: port(options.s3Port, '--s3-port'),
    azurePort: port(options.azurePort, '--azure-port'),
    webhookPort: port(options.webhookPort, '--webhook-port'),
    bucket: options.bucket,
    container: options.container,
    ...(options.data !== undefined && { azuriteDataDir: options.data }),
    ...(options.config !== undefined && { configFile: options.config }),
  });
  // Operations commands in other terminals (`s3az dlq list --local`) find the mirror here.
  const { emulators } = mirror;
  const state: LocalState = {
    pid: process.pid,
    s3Endpoint: emulators.s3Endpoint,
    region: emulators.region,
    accessKeyId: emulators.accessKeyId,
    secretAccessKey: emulators.secretAccessKey,
    azureConnectionString: emulators.azureConnectionString,
    queues: mirror.queues,
    config: mirror.config,
    lastChanges: {},
  };
  const statePort = Number(new URL(emulators.s3Endpoint).port);
  const removeState = await writeLocalState(statePort, state);
  // `s3az status --local` shows each rule's last change: written at most once a second.
  let stateWrite: NodeJS.Timeout | undefined;
  mirror.telemetry.onTask((report) => {
    if (report.result !== 'done' || report.outcome.action === 'skipped') return;
    state.lastChanges = {
      ...state.lastChanges,
      [report.task.rule]: {
        lastAt: new Date().toISOString(),
        lastKey: report.task.sourceKey,
        lastAction: report.outcome.action,
        latencyMs: report.latencyMs,
      },
    };
    stateWrite ??= setTimeout(() => {
      stateWrite = undefined;
      if (!stopping) void writeLocalState(statePort, state).catch(() => undefined);
    }, 1000);
  });
  let stopping = false;
  const stop = async (say = !options.json) => {
    if (stopping) return;
    stopping = true;
    if (say) process.stdout.write('\nstopping the local mirror...\n');
    if (say && mirror.faults) process.stdout.write(`${faultSummary(mirror.faults)}\n`);
    clearTimeout(stateWrite);
    await Promise.all([mirror.stop(), removeState()]);
    process.exit(0);
  };
  // Ctrl-C reaches every process of the terminal's group; `kill <pid>` (SIGTERM) and a closed
  // terminal (SIGHUP) reach this one only, which stops its emulators itself.
  process.once('SIGINT', () => stop());
  process.once('SIGTERM', () => stop());
  process.once('SIGHUP', () => stop(false));
  watchParent(() => stop(false));
  // A reader that went away (a closed pipe) is no reason to crash past mirror.stop().
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') void stop(false);
    });
  }

  printReady(mirror, options);
  mirror.telemetry.onTask((report) => {
    const line = options.json ? JSON.stringify(jsonOf(report)) : textOf(report);
    if (line) process.stdout.write(`${line}\n`);
  });
  await new Promise<never>(() => undefined);
}

/** How often the mirror checks that its parent still runs. */
const PARENT_POLL_MS = 250;

/**
 * Calls `onGone` once the process that started this one has exited. `npm start` runs the
 * mirror under `sh -c`; `kill <npm's pid>` ends npm and the shell but not the mirror, which
 * would keep the ports. An orphan is adopted by another process, so its parent pid changes.
 */
function watchParent(onGone: () => void): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      onGone();
    }
  }, PARENT_POLL_MS);
  timer.unref();
}

function where(report: TaskReport): { from: string; to: string } {
  const task = report.task;
  if (!task) return { from: '?', to: '?' };
  const s3 = (bucket: string, key: string) => `s3://${bucket}/${key}`;
  const az = (container: string, key: string) => `az://${container}/${key}`;
  return task.sourceSide === 's3'
    ? {
        from: s3(task.sourceContainer, task.sourceKey),
        to: az(task.destinationContainer, task.destinationKey),
      }
    : {
        from: az(task.sourceContainer, task.sourceKey),
        to: s3(task.destinationContainer, task.destinationKey),
      };
}

/**
 * The text line `s3az local` prints for one task: copies, deletes, every skip that leaves the
 * sides different (`kept`), and failures; `undefined` for skips that change nothing.
 */
export function textOf(report: TaskReport): string | undefined {
  const { from, to } = where(report);
  const time = new Date().toISOString().slice(11, 23);
  if (report.result === 'done') {
    const outcome = report.outcome;
    if (outcome.action === 'copied') {
      return `${time} copied  ${from} -> ${to} (${formatBytes(outcome.bytes)}, ${report.latencyMs} ms after the event)`;
    }
    if (outcome.action === 'deleted') return `${time} deleted ${to} (deleted at ${from})`;
    // A replica's own event, or a duplicate: nothing changed, so nothing to say by default.
    if (outcome.reason === 'replica' || outcome.reason === 'up-to-date') return undefined;
    // The sides stay different on purpose: say so, and which side was kept.
    if (DIFFERENCE_KEPT.has(outcome.reason)) {
      return `${time} kept    ${to}, which differs from ${from} (${outcome.reason}: ${outcome.detail})`;
    }
    return `${time} skipped ${from} (${outcome.reason}: ${outcome.detail})`;
  }
  if (report.result === 'continued') return `${time} continuing ${from}: ${report.detail}`;
  return `${time} ${report.deadLettered ? 'dead-lettered' : 'failed, will retry'} ${from}: ${report.error}`;
}

function jsonOf(report: TaskReport): Record<string, unknown> {
  const { from, to } = where(report);
  const base = {
    time: new Date().toISOString(),
    from,
    to,
    correlationId: report.task?.correlationId,
  };
  if (report.result === 'done') return { ...base, ...report.outcome, latencyMs: report.latencyMs };
  if (report.result === 'continued') return { ...base, action: 'continued', detail: report.detail };
  return {
    ...base,
    action: report.deadLettered ? 'dead-lettered' : 'failed',
    errorKind: report.errorKind,
    error: report.error,
  };
}

/** `faults injected: S3 12 of 240 requests (503: 3, …); Azure …`. */
function faultSummary(faults: NonNullable<LocalMirror['faults']>): string {
  const side = (name: string, proxy: FaultProxy) => {
    const { requests, faults: byKind } = proxy.counts();
    const total = Object.values(byKind).reduce((sum, count) => sum + count, 0);
    const kinds = Object.entries(byKind)
      .filter(([, count]) => count > 0)
      .map(([kind, count]) => `${kind}: ${count}`)
      .join(', ');
    return `${name} ${total} of ${requests} requests${kinds ? ` (${kinds})` : ''}`;
  };
  return `faults injected: ${side('S3', faults.s3)}; ${side('Azure', faults.azure)}`;
}

function printReady(mirror: LocalMirror, options: LocalCommandOptions): void {
  const { emulators, config, webhookUrl, webhookSecret } = mirror;
  const rule = config.rules[0];
  const bucket = rule?.s3.bucket ?? options.bucket;
  const container = rule?.azure.container ?? options.container;
  const sas = generateBlobSASQueryParameters(
    {
      containerName: container,
      permissions: ContainerSASPermissions.parse('racwdl'),
      expiresOn: new Date(Date.now() + 24 * 3600 * 1000),
    },
    new StorageSharedKeyCredential(emulators.azureAccountName, emulators.azureAccountKey),
  ).toString();
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({
        ready: true,
        s3Endpoint: emulators.s3Endpoint,
        region: emulators.region,
        accessKeyId: emulators.accessKeyId,
        secretAccessKey: emulators.secretAccessKey,
        azureAccountUrl: emulators.azureAccountUrl,
        azureConnectionString: emulators.azureConnectionString,
        webhookUrl,
        webhookSecret,
        queues: mirror.queues,
        rules: config.rules.map((each) => ({
          name: each.name,
          bucket: each.s3.bucket,
          container: each.azure.container,
          direction: each.direction,
          deletes: each.deletes,
        })),
      })}\n`,
    );
    return;
  }
  const rules = config.rules.map(
    (each) =>
      `  rule "${each.name}": s3://${each.s3.bucket}/${each.s3.prefix} <-> az://${each.azure.container}/${each.azure.prefix} (${each.direction}, deletes ${each.deletes === 'mirror' ? 'mirrored' : 'not mirrored'})`,
  );
  const lines = [
    'local mirror ready',
    '',
    `  S3 + SQS    ${emulators.s3Endpoint}   bucket: ${bucket}   region: ${emulators.region}`,
    `  Azure Blob  ${emulators.azureAccountUrl}   container: ${container}`,
    `  Event Grid webhook  ${webhookUrl}   secret (${SECRET_HEADER} header): ${webhookSecret}`,
    ...rules,
    ...(options.faults !== undefined && mirror.faults
      ? [
          `  faults: ${options.faults} of the replicator's requests to S3 (via ${mirror.faults.s3.url}) and Azure (via ${mirror.faults.azure.url}); your own requests go direct`,
        ]
      : []),
    '',
    'environment for the AWS CLI, the SDKs, the Azure CLI and s3az:',
    `  export AWS_ENDPOINT_URL=${emulators.s3Endpoint} AWS_ENDPOINT_URL_S3=${emulators.s3Endpoint} AWS_REGION=${emulators.region} AWS_DEFAULT_REGION=${emulators.region}`,
    `  export AWS_ACCESS_KEY_ID=${emulators.accessKeyId} AWS_SECRET_ACCESS_KEY=${emulators.secretAccessKey}`,
    `  export AZURE_STORAGE_CONNECTION_STRING='${emulators.azureConnectionString}'`,
    '',
    // AWS_ENDPOINT_URL is read by AWS CLI 2.13.0 / 1.29.0 and later only; older ones would go
    // to AWS itself. https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html
    'try (--endpoint-url for AWS CLIs older than 2.13 / 1.29, which ignore AWS_ENDPOINT_URL):',
    `  aws s3 cp ./file s3://${bucket}/file --endpoint-url ${emulators.s3Endpoint}    # appears in Azure within seconds`,
    `  az storage blob upload --container-name ${container} --name other --file ./file --connection-string "$AZURE_STORAGE_CONNECTION_STRING"`,
    `  aws s3 ls s3://${bucket}/ --endpoint-url ${emulators.s3Endpoint}    # ... and "other" appears here`,
    '',
    'the webhook, as Event Grid calls it (this is its subscription handshake):',
    `  curl -sS -H '${SECRET_HEADER}: ${webhookSecret}' -d '${JSON.stringify(HANDSHAKE)}' ${webhookUrl}`,
    '',
    'rclone (remotes from the environment; unset AWS_CA_BUNDLE for rclone if your shell sets it):',
    `  export RCLONE_CONFIG_LOCALS3_TYPE=s3 RCLONE_CONFIG_LOCALS3_PROVIDER=Other RCLONE_CONFIG_LOCALS3_FORCE_PATH_STYLE=true RCLONE_CONFIG_LOCALS3_ENDPOINT=${emulators.s3Endpoint} RCLONE_CONFIG_LOCALS3_ACCESS_KEY_ID=${emulators.accessKeyId} RCLONE_CONFIG_LOCALS3_SECRET_ACCESS_KEY=${emulators.secretAccessKey} RCLONE_CONFIG_LOCALS3_UPLOAD_CUTOFF=8M`,
    `  export RCLONE_CONFIG_LOCALAZ_TYPE=azureblob RCLONE_CONFIG_LOCALAZ_SAS_URL='${emulators.azureAccountUrl}/${container}?${sas}'`,
    `  rclone copy ./dir locals3:${bucket}/dir     # or localaz:${container}/dir`,
    '',
    'One line per replicated change follows. Ctrl-C stops everything. (Credentials generated for this run only.)',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
