/**
 * `npm run bench -- fuzz [--inputs N] [--seed S]`: hostile inputs through
 * the webhook (handlers/eventgrid.ts on in-memory queues that refuse what SQS refuses), the
 * plan step (planBatch) and the copy step (processTaskRecord on the emulators' stores, their
 * writes counted). Prints the inputs per target and kind, the answers, crashes, writes, the
 * peak heap and the time; exits 1 on any crash, write or other broken contract.
 * The same targets and checks as test/integration/fuzz.test.ts, at 100,000 inputs by default.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { validateConfig } from '../../src/config/load.ts';
import { startEmulators } from '../../src/local/emulators.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { makeS3Client } from '../../src/stores/clients.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import {
  AUTH_VARIANTS,
  type AuthVariant,
  CopyTarget,
  decodedBody,
  draw,
  fuzzRuleConfig,
  type HostileBody,
  hostileBody,
  PlanTarget,
  type Shape,
  Tally,
  taskOnExisting,
  type Verdict,
  WebhookTarget,
} from '../support/fuzz.ts';
import type { Cleanup } from './lifecycle.ts';

const USAGE = `usage: npm run bench -- fuzz [--inputs N] [--seed S]

Runs N hostile inputs (default 100,000): 40% webhook requests (each body posted once
authenticated and once with a missing, wrong or forged credential), 35% plan records, 25% copy
tasks. Exits 1 on any crash, store write or broken contract.
`;

interface FuzzOptions {
  inputs: number;
  seed: number;
}

function parseOptions(args: readonly string[]): FuzzOptions {
  const options: FuzzOptions = { inputs: 100_000, seed: 20261130 };
  for (let index = 0; index < args.length; index++) {
    const name = args[index];
    const value = () => {
      const text = args[++index];
      const number = Number(text);
      if (text === undefined || !Number.isSafeInteger(number) || number < 0) {
        throw new Error(`${name} needs a whole number`);
      }
      return number;
    };
    if (name === '--inputs') options.inputs = value();
    else if (name === '--seed') options.seed = value();
    else if (name === '--help' || name === '-h') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${name}\n${USAGE}`);
  }
  return options;
}

type Target = 'webhook' | 'plan' | 'copy';

/** What a run saw, per target. */
class TargetReport {
  readonly kinds = new Tally();
  readonly answers = new Tally();
  readonly broken = new Tally();
  readonly examples = new Map<string, string>();
  tried = 0;
  crashes = 0;
  writes = 0;
  /** Inputs with a broken contract. */
  unexplained = 0;
  milliseconds = 0;

  note(target: Target, input: HostileBody, verdict: Verdict): void {
    this.tried += 1;
    this.kinds.add(input.kind);
    this.answers.add(verdict.answer);
    if (verdict.violations.length === 0) return;
    this.unexplained += 1;
    const crash = /threw|retried|status 5\d\d/.test(
      `${verdict.answer} ${verdict.violations.join(' ')}`,
    );
    const write = verdict.violations.some((violation) =>
      /store writes|tasks sent|messages sent|messages stored|was copied|was deleted/.test(
        violation,
      ),
    );
    if (crash) this.crashes += 1;
    if (write) this.writes += 1;
    for (const violation of verdict.violations) {
      const kind = signature(violation);
      this.broken.add(kind);
      if (!this.examples.has(kind) && this.examples.size < 12) {
        this.examples.set(
          kind,
          `${target} ${input.kind}: ${JSON.stringify(decodedBody(input).slice(0, 300))}`,
        );
      }
    }
  }
}

/**
 * A violation without what varies from input to input (quoted names, URLs, the key an error
 * message quotes before its last `: `), to count violations by kind.
 */
function signature(violation: string): string {
  return violation
    .replace(/"[^"]*"|s3:\/\/\S*|az:\/\/\S*/g, '…')
    .replace(/(\w*Error): [\s\S]*: ([^:]+)$/, '$1: …: $2')
    .replace(/\s+/g, ' ')
    .slice(0, 150);
}

const SHAPES: Record<Target, Shape[]> = {
  webhook: ['event-grid', 'cloud-event', 'cloud-event-batch'],
  plan: ['s3', 'event-grid', 'cloud-event'],
  copy: ['task'],
};

/** `total` inputs for `target`, drawn 200 at a time (oversized bodies are 1 MiB each). */
function* inputsFor(target: Target, total: number, seed: number): Generator<HostileBody> {
  const arbitraries = SHAPES[target].map((shape) =>
    hostileBody(shape, { oversized: target === 'webhook' }),
  );
  for (let drawn = 0, chunk = 0; drawn < total; chunk++) {
    const arbitrary = arbitraries[chunk % arbitraries.length] as (typeof arbitraries)[number];
    const count = Math.min(200, total - drawn);
    yield* draw(arbitrary, count, seed + chunk);
    drawn += count;
  }
}

const megabytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

/** A full collection (the --expose-gc function, fetched at run time), so "after" means retained. */
function collect(): void {
  try {
    v8.setFlagsFromString('--expose-gc');
    (vm.runInNewContext('gc') as () => void)();
  } catch {
    // Without it the figure includes garbage not yet collected.
  }
}

export async function runFuzz(args: readonly string[], cleanup: Cleanup): Promise<void> {
  const options = parseOptions(args);
  const started = Date.now();
  process.stderr.write('fuzz: starting the emulators\n');
  const emulators = await startEmulators();
  cleanup.add(() => emulators.stop());
  const s3Client = makeS3Client({
    AWS_ENDPOINT_URL_S3: emulators.s3Endpoint,
    AWS_REGION: emulators.region,
    AWS_ACCESS_KEY_ID: emulators.accessKeyId,
    AWS_SECRET_ACCESS_KEY: emulators.secretAccessKey,
  });
  const bucket = 'fuzz-bench';
  await s3Client.send(new CreateBucketCommand({ Bucket: bucket }));
  const container = BlobServiceClient.fromConnectionString(
    emulators.azureConnectionString,
  ).getContainerClient('fuzz-bench');
  await container.create();
  // What hostile tasks aim at, written before the stores are wrapped (not counted).
  await s3Client.send(new PutObjectCommand({ Bucket: bucket, Key: 'fuzz-source', Body: 'source' }));
  await container.getBlockBlobClient('fuzz-victim').upload('victim', 6);
  const rules = validateConfig(fuzzRuleConfig(bucket, 'fuzz-bench')).rules;
  const stores = {
    s3: new S3ObjectStore(s3Client, bucket),
    azure: new AzureBlobObjectStore(container),
  };

  const webhookRequests = Math.round(options.inputs * 0.4);
  const planRecords = Math.round(options.inputs * 0.35);
  const copyTasks = options.inputs - webhookRequests - planRecords;
  const reports: Record<Target, TargetReport> = {
    webhook: new TargetReport(),
    plan: new TargetReport(),
    copy: new TargetReport(),
  };
  collect();
  let peakHeap = process.memoryUsage().heapUsed;
  const heapBefore = peakHeap;
  let done = 0;
  const progress = () => {
    done += 1;
    if (done % 500 === 0) {
      peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
      if (done % 10_000 === 0) process.stderr.write(`fuzz: ${done} inputs\n`);
    }
  };

  // Webhook: each body once authenticated, once not (a missing, wrong or forged credential).
  let phase = Date.now();
  const webhook = new WebhookTarget();
  let index = 0;
  for (const input of inputsFor('webhook', Math.ceil(webhookRequests / 2), options.seed)) {
    const other = AUTH_VARIANTS[(index++ % (AUTH_VARIANTS.length - 2)) + 2] as AuthVariant;
    reports.webhook.note('webhook', input, await webhook.run(input, other));
    progress();
    if (reports.webhook.tried >= webhookRequests) break;
    reports.webhook.note('webhook', input, await webhook.run(input, 'valid'));
    progress();
  }
  reports.webhook.milliseconds = Date.now() - phase;

  phase = Date.now();
  const plan = new PlanTarget(rules);
  index = 0;
  for (const input of inputsFor('plan', planRecords, options.seed + 100_000)) {
    reports.plan.note('plan', input, await plan.run(decodedBody(input), `m-${index++}`));
    progress();
  }
  reports.plan.milliseconds = Date.now() - phase;

  phase = Date.now();
  const copy = new CopyTarget(rules, stores);
  const onExisting = Math.round(copyTasks * 0.1);
  const copyInputs = (function* () {
    yield* inputsFor('copy', copyTasks - onExisting, options.seed + 200_000);
    for (let drawn = 0; drawn < onExisting; drawn += 200) {
      yield* draw(
        taskOnExisting({ source: 'fuzz-source', victim: 'fuzz-victim' }),
        Math.min(200, onExisting - drawn),
        options.seed + 300_000 + drawn,
      );
    }
  })();
  index = 0;
  for (const input of copyInputs) {
    reports.copy.note('copy', input, await copy.run(decodedBody(input), `t-${index++}`));
    progress();
  }
  reports.copy.milliseconds = Date.now() - phase;
  peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
  collect();

  const lines: string[] = [];
  let total = 0;
  let crashes = 0;
  let writes = 0;
  let unexplained = 0;
  for (const [target, report] of Object.entries(reports)) {
    total += report.tried;
    crashes += report.crashes;
    writes += report.writes;
    unexplained += report.unexplained;
    lines.push(
      '',
      `${target}: ${report.tried} inputs in ${(report.milliseconds / 1000).toFixed(1)} s; crashes ${report.crashes}, writes ${report.writes}, broken contracts ${report.unexplained}`,
      '  by kind:',
      ...report.kinds.lines('    '),
      '  answers:',
      ...report.answers.lines('    '),
    );
    if (report.broken.total > 0) {
      lines.push('  broken contracts:', ...report.broken.lines('    '));
      lines.push('  first input of each (the first 12 kinds):');
      for (const [kind, example] of report.examples)
        lines.push(`    ${kind.slice(0, 90)}\n      ${example}`);
    }
  }
  lines.push(
    '',
    `total: ${total} inputs tried`,
    `crashes (throws, 5xx, records retried): ${crashes}`,
    `store writes and messages sent for bad inputs: ${writes}`,
    `inputs with a broken contract: ${unexplained}`,
    // heapUsed of this process, sampled every 500 inputs (garbage included: a peak, not what
    // is retained); before and after follow a full collection. The emulators are not counted.
    `heap: ${megabytes(heapBefore)} before, peak sampled ${megabytes(peakHeap)} (garbage included), ${megabytes(process.memoryUsage().heapUsed)} after a collection`,
    `time: ${((Date.now() - started) / 1000).toFixed(1)} s (emulators included)`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  if (
    crashes > 0 ||
    writes > 0 ||
    reports.webhook.broken.total + reports.plan.broken.total + reports.copy.broken.total > 0
  ) {
    throw new Error(
      `fuzz: ${crashes} crashes, ${writes} writes, ${unexplained} inputs with a broken contract`,
    );
  }
}
