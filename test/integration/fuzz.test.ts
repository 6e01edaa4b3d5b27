/**
 * Hostile input (reliability issue, item 5): malformed, truncated, oversized, deeply nested,
 * wrong-typed, duplicated-key and forged bodies, and hostile keys, through the webhook, the
 * plan step and the copy step. Each answer must be a documented 4xx, a dead letter with its
 * reason, or a skip with its reason; never a throw, a 500/503, a retry of what can never
 * succeed, a message on the tasks queue for a bad record, or a store write.
 * `npm run bench -- fuzz` runs the same targets on 100,000 inputs.
 */
import { randomBytes, type webcrypto } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { generateKeyPair, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import type { ReplicationRule } from '../../src/config/schema.ts';
import { handleWebhook } from '../../src/events/webhook.ts';
import { planBatch } from '../../src/queue/plan-batch.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import {
  makeBlobServiceClient,
  makeS3Client,
  makeSqsClient,
  uniqueName,
} from '../support/emulators.ts';
import { entraFixture } from '../support/entra.ts';
import {
  AUTH_VARIANTS,
  type AuthVariant,
  CopyTarget,
  cloudEvent,
  decodedBody,
  deeplyNested,
  deliverableBySqs,
  draw,
  eventGridEvent,
  fuzzRuleConfig,
  type HostileBody,
  hostileBody,
  judgePlan,
  PlanTarget,
  type Shape,
  type StoredMessage,
  Tally,
  taskOnExisting,
  type Verdict,
  WebhookTarget,
  writeCounting,
} from '../support/fuzz.ts';

/** Inputs per target (each webhook input is posted twice: authenticated, and not). */
const PER_TARGET = 3000;
const SEED = 20261130;

/** Every answer, and every kind of violation with the first input that caused it. */
class Findings {
  readonly answers = new Tally();
  readonly #violations = new Map<string, string>();
  tried = 0;

  note(target: string, input: HostileBody, verdict: Verdict): void {
    this.tried += 1;
    this.answers.add(`${target} ${input.kind}: ${verdict.answer}`);
    for (const violation of verdict.violations) {
      // One example per kind of violation (its text without the quoted key).
      const kind = `${target} ${input.kind}: ${violation.replace(/"[^"]*"|s3:\/\/\S*|az:\/\/\S*/g, '…').slice(0, 160)}`;
      if (!this.#violations.has(kind)) {
        this.#violations.set(
          kind,
          `${target} ${input.kind}: ${violation}\n  input: ${JSON.stringify(decodedBody(input).slice(0, 400))}`,
        );
      }
    }
  }

  get violations(): string[] {
    return [...this.#violations.values()];
  }
}

const SHAPES: Record<'webhook' | 'plan', Shape[]> = {
  webhook: ['event-grid', 'cloud-event', 'cloud-event-batch'],
  plan: ['s3', 'event-grid', 'cloud-event'],
};

/**
 * `total` hostile bodies for `target`, drawn 100 at a time (an oversized body is over 1 MiB:
 * thousands held at once would be the test's own memory, not the code's).
 */
function* inputsFor(
  target: 'webhook' | 'plan' | 'copy',
  total: number,
  seed: number,
): Generator<HostileBody> {
  const shapes = target === 'copy' ? (['task'] as Shape[]) : SHAPES[target];
  const arbitraries = shapes.map((shape) =>
    hostileBody(shape, { oversized: target === 'webhook' }),
  );
  for (let drawn = 0, chunk = 0; drawn < total; chunk++) {
    const arbitrary = arbitraries[chunk % arbitraries.length] as (typeof arbitraries)[number];
    const count = Math.min(100, total - drawn);
    yield* draw(arbitrary, count, seed + chunk);
    drawn += count;
  }
}

const heapMb = () => process.memoryUsage().heapUsed / 1024 / 1024;
/**
 * A full garbage collection, so heap figures mean what is retained: `global.gc` when Node runs
 * with --expose-gc, else the same function fetched after setting the flag at run time.
 */
const collect: () => void = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  try {
    v8.setFlagsFromString('--expose-gc');
    return vm.runInNewContext('gc') as () => void;
  } catch {
    return () => undefined;
  }
})();

let sqs: SQSClient;
let rules: ReplicationRule[];
let stores: { s3: S3ObjectStore; azure: AzureBlobObjectStore };
const VICTIM = 'fuzz-victim';
const SOURCE = 'fuzz-source';
let heapBefore = 0;
let peakHeap = 0;
const samplePeak = () => {
  peakHeap = Math.max(peakHeap, heapMb());
};

beforeAll(async () => {
  sqs = makeSqsClient();
  const client = makeS3Client();
  const bucket = uniqueName('fuzz');
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const container = makeBlobServiceClient().getContainerClient(uniqueName('fuzz'));
  await container.create();
  stores = { s3: new S3ObjectStore(client, bucket), azure: new AzureBlobObjectStore(container) };
  rules = validateConfig(fuzzRuleConfig(bucket, container.containerName)).rules;
  // The objects hostile tasks aim at: a source with a name Azure can hold, and a blob that a
  // `..` name would resolve to. Written before the stores are wrapped: not counted.
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: SOURCE, Body: 'source' }));
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: VICTIM, Body: 'victim' }));
  await container.getBlockBlobClient(VICTIM).upload('victim', 6);
  collect();
  heapBefore = heapMb();
});

describe('Fuzz: the webhook', () => {
  it(`answers ${PER_TARGET} hostile deliveries, with and without auth, as documented`, async () => {
    const target = new WebhookTarget();
    const findings = new Findings();
    let index = 0;
    for (const input of inputsFor('webhook', PER_TARGET, SEED)) {
      index += 1;
      const other = AUTH_VARIANTS[(index % (AUTH_VARIANTS.length - 2)) + 2] as AuthVariant;
      // Unauthenticated, every input must be refused with 401 (or 413 when oversized).
      findings.note('webhook', input, await target.run(input, other));
      findings.note('webhook', input, await target.run(input, 'valid'));
      if (index % 200 === 0) samplePeak();
    }
    expect(findings.violations).toEqual([]);
    // Each kind of hostility was tried, and each documented refusal was seen.
    const answers = [...findings.answers.counts.keys()].join('\n');
    for (const kind of ['truncated', 'deep-nesting', 'wrong-type', 'duplicate-key', 'oversized']) {
      expect(answers).toContain(`webhook ${kind}:`);
    }
    for (const answer of [
      '413 over 1 MiB',
      '401 unauthenticated',
      '400 not JSON',
      '400 not events',
      '200 dead-lettered',
    ]) {
      expect(answers).toContain(answer);
    }
    expect(findings.tried).toBe(2 * PER_TARGET);
    console.info(`fuzz webhook: ${findings.tried} requests (${index} bodies)`);
  });

  it('refuses forged Entra ID tokens with 401 and stores nothing', async () => {
    const tenant = '11111111-2222-3333-4444-555555555555';
    const audience = 'api://s3az-webhook';
    const { signingKey, auth } = await entraFixture(tenant, audience);
    const otherKey = (await generateKeyPair('RS256')).privateKey;
    const eventGridApp = '4962773b-9cdb-44cf-a8bf-237846a00ab7';
    const sign = (
      claims: Record<string, unknown>,
      options: {
        key?: webcrypto.CryptoKey;
        issuer?: string;
        audience?: string;
        expires?: string;
      } = {},
    ) =>
      new SignJWT({
        roles: ['AzureEventGridSecureWebhookSubscriber'],
        azp: eventGridApp,
        ...claims,
      })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(options.issuer ?? `https://login.microsoftonline.com/${tenant}/v2.0`)
        .setAudience(options.audience ?? audience)
        .setIssuedAt()
        .setExpirationTime(options.expires ?? '5m')
        .sign(options.key ?? signingKey);
    const valid = await sign({});
    const [header, payload] = valid.split('.');
    const unsigned = (claims: object) =>
      `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
    const forged: string[] = [
      '',
      'Bearer',
      'Bearer ',
      'bearer x',
      `Basic ${valid}`,
      `Bearer ${unsigned({ roles: ['AzureEventGridSecureWebhookSubscriber'], azp: eventGridApp, aud: audience })}`,
      `Bearer ${header}.${payload}.${randomBytes(256).toString('base64url')}`,
      `Bearer ${header}.${Buffer.from(JSON.stringify({ aud: audience, roles: ['AzureEventGridSecureWebhookSubscriber'] })).toString('base64url')}.${valid.split('.')[2]}`,
      `Bearer ${await sign({}, { key: otherKey })}`,
      `Bearer ${await sign({}, { audience: 'api://other' })}`,
      `Bearer ${await sign({}, { issuer: 'https://login.microsoftonline.com/other/v2.0' })}`,
      `Bearer ${await sign({}, { expires: '-10m' })}`,
      `Bearer ${await sign({ roles: [] })}`,
      `Bearer ${await sign({ roles: 'AzureEventGridSecureWebhookSubscriber' })}`,
      `Bearer ${await sign({ azp: 'ffffffff-0000-0000-0000-000000000000' })}`,
      `Bearer ${await sign({ azp: 42, appid: undefined })}`,
      `Bearer ${valid}.${valid}`,
      `Bearer ${'a'.repeat(100_000)}`,
      `Bearer ${valid.slice(0, -5)}`,
    ];
    const bodies = [
      JSON.stringify([eventGridEvent('k')]),
      JSON.stringify(cloudEvent('k')),
      deeplyNested(10_000, 'array'),
      '{"id":"x","id":"y"',
    ];
    let stored = 0;
    const dependencies = {
      auth,
      enqueue: async () => {
        stored += 1;
      },
      deadLetter: async () => {
        stored += 1;
      },
    };
    for (const authorization of forged) {
      for (const body of bodies) {
        const response = await handleWebhook(
          {
            method: 'POST',
            headers: authorization === '' ? {} : { authorization },
            query: {},
            body,
          },
          dependencies,
        );
        expect(response.status, `${authorization.slice(0, 60)} on ${body.slice(0, 40)}`).toBe(401);
      }
    }
    expect(stored).toBe(0);
    // The real token is let in: the refusals above are the forgeries'.
    const accepted = await handleWebhook(
      {
        method: 'POST',
        headers: { authorization: `Bearer ${valid}` },
        query: {},
        body: bodies[0] ?? '',
      },
      dependencies,
    );
    expect(accepted.status).toBe(200);
  });
});

describe('Fuzz: the plan step', () => {
  it(`dead-letters or skips ${PER_TARGET} hostile queued events with a reason, sending no task for a bad one`, async () => {
    const target = new PlanTarget(rules);
    const findings = new Findings();
    let index = 0;
    for (const input of inputsFor('plan', PER_TARGET, SEED + 10)) {
      index += 1;
      findings.note('plan', input, await target.run(decodedBody(input), `m-${index}`));
      if (index % 200 === 0) samplePeak();
    }
    expect(findings.violations).toEqual([]);
    const answers = [...findings.answers.counts.keys()].join('\n');
    expect(answers).toContain('dead-lettered malformed-event');
    console.info(`fuzz plan (in memory): ${findings.tried} records`);
  });

  it('does the same through real queues (fauxqs) for a sample', async () => {
    const create = async (name: string) =>
      (await sqs.send(new CreateQueueCommand({ QueueName: uniqueName(name) }))).QueueUrl ?? '';
    const [events, eventsDeadLetter, tasks] = await Promise.all([
      create('fuzz-events'),
      create('fuzz-events-dlq'),
      create('fuzz-tasks'),
    ]);
    const planned: Array<{ ignored: string[]; unrouted: number; events: number }> = [];
    const dependencies = {
      sqs,
      rules,
      eventsQueueUrl: events,
      eventsDeadLetterQueueUrl: eventsDeadLetter,
      tasksQueueUrl: tasks,
      storesOf: async () => {
        throw new Error('the plan step asked for stores');
      },
      telemetry: {
        logger: { debug() {}, info() {}, warn() {}, error() {} },
        planned: (counts: { ignored: string[]; unrouted: number; events: number }) =>
          planned.push(counts),
        replicaEvents() {},
      } as never,
    };
    const drain = async (queueUrl: string): Promise<StoredMessage[]> => {
      const out: StoredMessage[] = [];
      for (;;) {
        const received = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: 10,
            MessageAttributeNames: ['All'],
            VisibilityTimeout: 60,
          }),
        );
        const messages: Message[] = received.Messages ?? [];
        if (messages.length === 0) return out;
        for (const message of messages) {
          out.push({
            body: message.Body ?? '',
            attributes: Object.fromEntries(
              Object.entries(message.MessageAttributes ?? {}).map(([name, value]) => [
                name,
                value.StringValue ?? '',
              ]),
            ),
          });
        }
      }
    };
    const findings = new Findings();
    const inputs = [...inputsFor('plan', 150, SEED + 20)].filter((input) =>
      deliverableBySqs(decodedBody(input)),
    );
    for (const input of inputs) {
      // Through the events queue, as S3 or the webhook would put it there. fauxqs refuses
      // characters outside the BMP, which SQS takes: those bodies are not sent.
      try {
        await sqs.send(
          new SendMessageCommand({ QueueUrl: events, MessageBody: decodedBody(input) }),
        );
      } catch (error) {
        if ((error as { name?: string }).name?.includes('InvalidMessageContents')) continue;
        throw error;
      }
      const received = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: events, MaxNumberOfMessages: 1, WaitTimeSeconds: 5 }),
      );
      const message = received.Messages?.[0];
      expect(message?.Body).toBe(decodedBody(input));
      const record: SQSRecord = {
        messageId: message?.MessageId ?? '',
        receiptHandle: message?.ReceiptHandle ?? '',
        body: message?.Body ?? '',
        attributes: {
          ApproximateReceiveCount: '1',
          SentTimestamp: '0',
          SenderId: 'fuzz',
          ApproximateFirstReceiveTimestamp: '0',
        },
        messageAttributes: {},
        md5OfBody: message?.MD5OfBody ?? '',
        eventSource: 'aws:sqs',
        eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:fuzz-events',
        awsRegion: 'us-east-1',
      };
      planned.length = 0;
      const response = await planBatch([record], dependencies);
      findings.note(
        'plan/fauxqs',
        input,
        judgePlan(
          record.body,
          response.batchItemFailures.length,
          await drain(eventsDeadLetter),
          await drain(tasks),
          [],
          planned[0] as never,
        ),
      );
    }
    expect(findings.violations).toEqual([]);
    expect(findings.tried).toBeGreaterThan(50);
    expect([...findings.answers.counts.keys()].join('\n')).toContain('dead-lettered');
  });
});

describe('Fuzz: the copy step', () => {
  it(`dead-letters or skips ${PER_TARGET} hostile tasks with a reason, writing nothing`, async () => {
    const target = new CopyTarget(rules, stores);
    const findings = new Findings();
    const inputs = [
      ...inputsFor('copy', PER_TARGET - 300, SEED + 30),
      ...draw(taskOnExisting({ source: SOURCE, victim: VICTIM }), 300, SEED + 31),
    ];
    for (const [index, input] of inputs.entries()) {
      findings.note('copy', input, await target.run(decodedBody(input), `t-${index}`));
      if (index % 200 === 0) samplePeak();
    }
    expect(findings.violations).toEqual([]);
    expect(target.writes).toEqual([]);
    // The victim a `..` name resolves to is still there.
    expect(await stores.azure.head(VICTIM)).toBeDefined();
    const answers = [...findings.answers.counts.keys()].join('\n');
    expect(answers).toContain('dead-lettered permanent');
    expect(answers).toContain('skipped');
    console.info(`fuzz copy: ${findings.tried} task records`);
  });

  it('counts a write through the wrapped stores (the check above can fail)', async () => {
    const counted = writeCounting(stores.s3);
    await counted.store.put(`fuzz-probe-${randomBytes(4).toString('hex')}`, Buffer.from('x'), {
      properties: {},
      metadata: {},
      condition: { kind: 'any' },
    });
    expect(counted.writes.map((write) => write.call)).toEqual(['put']);
  });
});

describe('Fuzz: memory', () => {
  it('keeps the heap bounded over the whole run', () => {
    // What this measures: the V8 heap of this test process after the runs above, against
    // before them (with a collection first when Node runs with --expose-gc; without it, the
    // figure includes garbage not yet collected, so it can only overstate). It does not see
    // the emulators' memory, buffers outside the heap, or a transient peak between samples.
    collect();
    samplePeak();
    const growth = heapMb() - heapBefore;
    console.info(
      `fuzz heap: before ${heapBefore.toFixed(0)} MB, after ${heapMb().toFixed(0)} MB, peak sampled ${peakHeap.toFixed(0)} MB`,
    );
    expect(growth).toBeLessThan(200);
    expect(peakHeap - heapBefore).toBeLessThan(400);
  });
});
