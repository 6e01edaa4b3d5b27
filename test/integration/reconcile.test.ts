import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DeleteMessageCommand, type Message, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { createReconcileHandler } from '../../handlers/reconcile.ts';
import { runPool } from '../../src/copy/pool.ts';
import { buildNativeMetadata, sourceRef } from '../../src/core/metadata.ts';
import type { CopyTask } from '../../src/core/route.ts';
import type { LocalState } from '../../src/ops/target.ts';
import {
  newReconcileState,
  type ReconcileDependencies,
  runReconcile,
} from '../../src/queue/reconcile.ts';
import type { Side } from '../../src/stores/object-store.ts';
import { emulatorEnv, makeS3Client, queueDepth } from '../support/emulators.ts';
import { type Pipeline, startPipeline } from '../support/pipeline.ts';

const RULE = 'mirror';
const BIN = new URL('../../src/cli/s3az.js', import.meta.url).pathname;

/** Writes to both sides of a pipeline's rule as users (and, for replicas, as the replicator did). */
function writer(pipeline: Pipeline) {
  const s3 = makeS3Client();
  const other = (side: Side): Side => (side === 's3' ? 'azure' : 's3');
  const containerOf = (side: Side) =>
    side === 's3' ? pipeline.bucket : pipeline.container.containerName;
  const put = async (
    side: Side,
    key: string,
    body: string,
    metadata: Record<string, string> = {},
  ): Promise<string> => {
    if (side === 's3') {
      const out = await s3.send(
        new PutObjectCommand({ Bucket: pipeline.bucket, Key: key, Body: body, Metadata: metadata }),
      );
      return out.ETag ?? '';
    }
    const out = await pipeline.container
      .getBlockBlobClient(key)
      .upload(body, Buffer.byteLength(body), { metadata });
    return out.etag ?? '';
  };
  return {
    put,
    /** An original on `side` and this rule's replica of it on the other side. */
    async mirrored(side: Side, key: string, body: string): Promise<void> {
      const etag = await put(side, key, body);
      const now = new Date().toISOString();
      await put(
        other(side),
        key,
        body,
        buildNativeMetadata(
          other(side),
          {},
          {
            origin: side,
            sourceEtag: etag,
            sourceLastModified: now,
            rule: RULE,
            source: sourceRef(containerOf(side), key),
            size: Buffer.byteLength(body),
            replicatedAt: now,
          },
        ),
      );
    },
    async remove(side: Side, key: string): Promise<void> {
      if (side === 's3') {
        await s3.send(new DeleteObjectCommand({ Bucket: pipeline.bucket, Key: key }));
      } else await pipeline.container.getBlobClient(key).delete();
    },
  };
}

const describeTask = (task: CopyTask) =>
  `${task.kind} ${task.sourceSide}:${task.sourceKey} -> ${task.destinationKey}`;

function dependencies(pipeline: Pipeline): ReconcileDependencies {
  return {
    rules: pipeline.runtime.config.rules,
    storesOf: (rule) => pipeline.runtime.storesOf(rule),
    sqs: pipeline.sqs,
    tasksQueueUrl: pipeline.queues.tasks,
  };
}

/** Receives and deletes every message of a queue. */
async function drain(pipeline: Pipeline, url: string): Promise<Message[]> {
  const all: Message[] = [];
  for (;;) {
    const { Messages = [] } = await pipeline.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }),
    );
    if (Messages.length === 0) return all;
    all.push(...Messages);
    await Promise.all(
      Messages.map((message) =>
        pipeline.sqs.send(
          new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: message.ReceiptHandle }),
        ),
      ),
    );
  }
}

async function queuedTasks(pipeline: Pipeline): Promise<string[]> {
  return (await drain(pipeline, pipeline.queues.tasks))
    .map((message) => describeTask(JSON.parse(message.Body ?? '{}') as CopyTask))
    .sort();
}

const range = (count: number) => Array.from({ length: count }, (_, i) => i);
const name = (prefix: string, i: number) => `${prefix}${String(i).padStart(5, '0')}`;

describe('Function: reconcile (the emulators)', () => {
  it('of 5,000 objects with 50 differences of every kind sends exactly those 50, and nothing once they are done', async () => {
    // Prepare: 5,000 objects, 1,250 originals on each side, each with its replica on the other
    // (Azurite's writes slow down with every blob it holds, so not more).
    const pipeline = await startPipeline({ rule: { deletes: 'mirror' } });
    const write = writer(pipeline);
    const base = [
      ...range(1250).map((i) => ({ side: 's3' as const, key: name('s3/obj-', i) })),
      ...range(1250).map((i) => ({ side: 'azure' as const, key: name('az/obj-', i) })),
    ];
    await runPool(base, 32, ({ side, key }) => write.mirrored(side, key, `content of ${key}`));
    const expected: string[] = [];
    const changes: Array<() => Promise<unknown>> = [];
    for (const i of range(10)) {
      // Missing on the other side: new objects whose events never came.
      changes.push(() => write.put('s3', `only/s3-${i}`, 'new on s3'));
      expected.push(`created s3:only/s3-${i} -> only/s3-${i}`);
      changes.push(() => write.put('azure', `only/az-${i}`, 'new on azure'));
      expected.push(`created azure:only/az-${i} -> only/az-${i}`);
    }
    for (const i of range(5)) {
      // Stale: the original changed, its replica did not.
      const s3Key = name('s3/obj-', i);
      const azureKey = name('az/obj-', i);
      changes.push(() => write.put('s3', s3Key, 'changed on s3'));
      expected.push(`created s3:${s3Key} -> ${s3Key}`);
      changes.push(() => write.put('azure', azureKey, 'changed on azure'));
      expected.push(`created azure:${azureKey} -> ${azureKey}`);
      // Deleted: the original went, its replica stayed.
      const goneOnS3 = name('s3/obj-', 100 + i);
      const goneOnAzure = name('az/obj-', 100 + i);
      changes.push(() => write.remove('s3', goneOnS3));
      expected.push(`deleted s3:${goneOnS3} -> ${goneOnS3}`);
      changes.push(() => write.remove('azure', goneOnAzure));
      expected.push(`deleted azure:${goneOnAzure} -> ${goneOnAzure}`);
      // Diverged: written by users on both sides; the later write wins.
      changes.push(() => write.put('azure', `diverged/s3-newer-${i}`, 'older on azure'));
      expected.push(`created s3:diverged/s3-newer-${i} -> diverged/s3-newer-${i}`);
      changes.push(() => write.put('s3', `diverged/az-newer-${i}`, 'older on s3'));
      expected.push(`created azure:diverged/az-newer-${i} -> diverged/az-newer-${i}`);
    }
    await runPool(changes, 16, async (change) => {
      await change();
    });
    // Whole seconds apart, as Last-Modified counts them.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await runPool(range(5), 5, async (i) => {
      await write.put('s3', `diverged/s3-newer-${i}`, 'newer on s3, longer');
      await write.put('azure', `diverged/az-newer-${i}`, 'newer on azure, longer');
    });
    expect(expected).toHaveLength(50);

    // Act: the scheduled function, with almost no time left: it lists a page, then the plan
    // step goes on with the run in follow-up messages while the copy step does the tasks.
    const handler = createReconcileHandler(() => Promise.resolve(pipeline.runtime));
    const first = await handler({}, { getRemainingTimeInMillis: () => 1000 } as Context);
    expect(first.done).toBe(false);
    expect(await queueDepth(pipeline.sqs, pipeline.queues.events)).toBe(1);
    await pipeline.settle(60_000);

    // Assess: exactly the 50 tasks, each done once.
    const done = pipeline.reports.filter((report) =>
      report.task?.correlationId.startsWith('reconcile:'),
    );
    expect(done.map((report) => (report.task ? describeTask(report.task) : '')).sort()).toEqual(
      [...expected].sort(),
    );
    expect(done.every((report) => report.result === 'done')).toBe(true);
    expect(await queueDepth(pipeline.sqs, pipeline.queues.tasksDeadLetter)).toBe(0);
    expect(await queueDepth(pipeline.sqs, pipeline.queues.eventsDeadLetter)).toBe(0);

    // A second run finds the two sides in full agreement.
    const second = await runReconcile(newReconcileState({ rules: [RULE] }), dependencies(pipeline));
    const [result] = second.state.results;
    expect(result?.differences).toEqual({
      'missing-on-azure': 0,
      'missing-on-s3': 0,
      stale: 0,
      diverged: 0,
      deleted: 0,
    });
    expect(result?.listed).toEqual({ s3: 2520, azure: 2520 });
    expect(result?.inSync).toBe(2520);
    expect(await queueDepth(pipeline.sqs, pipeline.queues.tasks)).toBe(0);
  }, 120_000);

  it('holds back deletes over the fraction of a side (the safety stop), and sends them with force', async () => {
    // Prepare: 20 objects on each side, 4 S3 originals deleted (4 of Azure's 20 objects, 20%).
    const pipeline = await startPipeline({ rule: { deletes: 'mirror' } });
    const write = writer(pipeline);
    await runPool(range(20), 10, (i) =>
      write.mirrored(i % 2 === 0 ? 's3' : 'azure', name('k-', i), `body ${i}`),
    );
    await runPool([0, 2, 4, 6], 4, (i) => write.remove('s3', name('k-', i)));
    await write.put('s3', 'new-one', 'new');

    // Act
    const refused = await runReconcile(
      newReconcileState({ rules: [RULE] }),
      dependencies(pipeline),
    );
    const refusedTasks = await queuedTasks(pipeline);
    const forced = await runReconcile(
      newReconcileState({ rules: [RULE], force: true }),
      dependencies(pipeline),
    );
    const forcedTasks = await queuedTasks(pipeline);
    // More deletes than it keeps: they are found again by a second listing.
    const looser = await runReconcile(
      newReconcileState({ rules: [RULE], maxDeleteFraction: 0.25 }),
      { ...dependencies(pipeline), heldDeletes: 2 },
    );
    const looserTasks = await queuedTasks(pipeline);

    // Assess: the deletes are held back and named; the copy goes anyway.
    expect(refused.state.results[0]).toMatchObject({
      deleteStops: [{ side: 'azure', deletes: 4, objects: 20 }],
      deletesWithheld: 4,
      tasksSent: 1,
    });
    expect(refusedTasks).toEqual(['created s3:new-one -> new-one']);
    const deletes = [0, 2, 4, 6].map((i) => `deleted s3:${name('k-', i)} -> ${name('k-', i)}`);
    expect(forced.state.results[0]).toMatchObject({ deleteStops: [], tasksSent: 5 });
    expect(forcedTasks).toEqual(['created s3:new-one -> new-one', ...deletes].sort());
    expect(looserTasks).toEqual(forcedTasks);
    expect(looser.state.results[0]?.deletesSent).toEqual({ s3: 0, azure: 4 });
  });

  it('continues a run in follow-up messages that carry tokens, not listings', async () => {
    const pipeline = await startPipeline({ rule: { deletes: 'mirror' } });
    const write = writer(pipeline);
    await runPool(range(30), 10, async (i) => {
      await write.put(i % 2 ? 's3' : 'azure', name('n-', i), 'x');
    });
    let state = newReconcileState({ rules: [RULE] });
    const messages: number[] = [];
    for (let slice = 0; slice < 100; slice++) {
      const run = await runReconcile(
        JSON.parse(JSON.stringify(state)),
        { ...dependencies(pipeline), pageSize: 4 },
        { stop: AbortSignal.abort() },
      );
      state = run.state;
      if (run.done) break;
      messages.push(Buffer.byteLength(JSON.stringify(state)));
    }
    expect(state.results[0]?.differences).toMatchObject({
      'missing-on-azure': 15,
      'missing-on-s3': 15,
    });
    expect(messages.length).toBeGreaterThan(5);
    expect(Math.max(...messages)).toBeLessThan(2000);
    expect(await queuedTasks(pipeline)).toHaveLength(30);
  });
});

describe('Command: s3az reconcile --local', () => {
  interface Run {
    code: number;
    stdout: string;
    stderr: string;
  }

  /** Runs the CLI against a pipeline, as if it were a running `s3az local` on its port. */
  async function cli(pipeline: Pipeline, args: string[]): Promise<Run> {
    const env = emulatorEnv();
    const port = new URL(env.s3Endpoint).port;
    // A state file of our own, where only this CLI process looks (TMPDIR).
    const dir = await mkdtemp(join(tmpdir(), 's3az-reconcile-'));
    const state: LocalState = {
      pid: process.pid,
      s3Endpoint: env.s3Endpoint,
      region: env.region,
      accessKeyId: env.accessKeyId,
      secretAccessKey: env.secretAccessKey,
      azureConnectionString: env.azureConnectionString,
      queues: pipeline.queues,
      config: pipeline.runtime.config,
    };
    await writeFile(join(dir, `s3az-local-${port}.json`), JSON.stringify(state));
    try {
      return await new Promise((resolve) => {
        execFile(
          process.execPath,
          [BIN, 'reconcile', '--local', port, ...args],
          { env: { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: dir }, cwd: dir },
          (error, stdout, stderr) => {
            const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
            resolve({ code, stdout, stderr });
          },
        );
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('reports in a dry run and sends nothing; sends with one line per refusal; --json', async () => {
    // Prepare: 10 objects in sync, 2 new on Azure, 3 originals deleted on S3 (3 of 12 on Azure).
    const pipeline = await startPipeline({ rule: { deletes: 'mirror' } });
    const write = writer(pipeline);
    await runPool(range(10), 10, (i) => write.mirrored('s3', name('c-', i), `body ${i}`));
    await write.put('azure', 'fresh/one', 'one');
    await write.put('azure', 'fresh/two', 'two');
    await runPool([1, 2, 3], 3, (i) => write.remove('s3', name('c-', i)));
    const reportDir = await mkdtemp(join(tmpdir(), 's3az-report-'));
    const report = join(reportDir, 'report.jsonl');

    // Act
    const dry = await cli(pipeline, ['--dry-run', '--report', report]);
    const lines = (await readFile(report, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, string>);
    const queuedAfterDryRun = await queueDepth(pipeline.sqs, pipeline.queues.tasks);
    const refused = await cli(pipeline, ['--json']);
    const refusedTasks = await queuedTasks(pipeline);
    const forced = await cli(pipeline, ['--force', '--rule', RULE]);
    const forcedTasks = await queuedTasks(pipeline);
    const unknown = await cli(pipeline, ['--rule', 'nope']);
    await rm(reportDir, { recursive: true, force: true });

    // Assess
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/dry run: nothing sent/);
    expect(dry.stdout).toMatch(/3 deleted/);
    expect(dry.stdout).toMatch(/deletes would be held back: 3 on Azure is 25% of its 12 objects/);
    expect(queuedAfterDryRun).toBe(0);
    expect(lines.sort((a, b) => String(a.key).localeCompare(String(b.key)))).toEqual([
      ...[1, 2, 3].map((i) => ({
        rule: RULE,
        difference: 'deleted',
        side: 's3',
        key: name('c-', i),
        action: 'delete',
        target: `az://${pipeline.container.containerName}/${name('c-', i)}`,
      })),
      ...['one', 'two'].map((each) => ({
        rule: RULE,
        difference: 'missing-on-s3',
        side: 'azure',
        key: `fresh/${each}`,
        action: 'copy',
        target: `s3://${pipeline.bucket}/fresh/${each}`,
      })),
    ]);

    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(
      /^s3az: rule "mirror": refused to send 3 deletes: 3 on Azure would be 25% of its 12 objects, over --max-delete-fraction 0.1; .*--force/,
    );
    const summary = JSON.parse(refused.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({ differences: 5, tasksSent: 2, deletesWithheld: 3 });
    expect(refusedTasks).toEqual([
      'created azure:fresh/one -> fresh/one',
      'created azure:fresh/two -> fresh/two',
    ]);

    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/sent 5 tasks \(2 copies, 3 deletes\)/);
    expect(forcedTasks).toHaveLength(5);

    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe(
      `s3az: no rule named "nope" in the configuration (rules: ${RULE})\n`,
    );
  });

  it('sends every task it finds to the tasks queue', async () => {
    const pipeline = await startPipeline({ rule: { deletes: 'mirror' } });
    await writer(pipeline).put('s3', 'a', 'a');
    const run = await cli(pipeline, []);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/1 difference, 1 task sent to the tasks queue/);
    expect(await queuedTasks(pipeline)).toEqual(['created s3:a -> a']);
  });
});
