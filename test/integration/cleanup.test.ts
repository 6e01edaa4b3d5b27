import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { ContainerClient } from '@azure/storage-blob';
import { beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import type { ReplicationRule } from '../../src/config/schema.ts';
import { REPLICATOR_ACCESS_KEY_PREFIX } from '../../src/local/emulators.ts';
import {
  cleanup,
  isReplicatorBlockId,
  localInitiators,
  namedInitiators,
  stackInitiators,
} from '../../src/ops/cleanup.ts';
import { blockIdFor } from '../../src/stores/azure-blob.ts';
import {
  emulatorEnv,
  makeBlobServiceClient,
  makeS3Client,
  uniqueName,
} from '../support/emulators.ts';

const HOUR = 3_600_000;
const later = () => Date.now() + 2 * HOUR;

/** An S3 client that signs with the local replicator's own access key. */
function replicatorS3(): S3Client {
  const env = emulatorEnv();
  return new S3Client({
    endpoint: env.s3Endpoint,
    forcePathStyle: true,
    region: env.region,
    credentials: { accessKeyId: env.replicatorAccessKeyId, secretAccessKey: env.secretAccessKey },
  });
}

async function startUpload(client: S3Client, bucket: string, key: string): Promise<string> {
  const out = await client.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ChecksumAlgorithm: 'CRC32' }),
  );
  await client.send(
    new UploadPartCommand({
      Bucket: bucket,
      Key: key,
      UploadId: out.UploadId,
      PartNumber: 1,
      Body: Buffer.from('part one'),
    }),
  );
  return out.UploadId ?? '';
}

async function uploadIds(bucket: string): Promise<string[]> {
  const out = await makeS3Client().send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return (out.Uploads ?? []).map((upload) => upload.UploadId ?? '').sort();
}

/** A block id of another writer (the Azure SDK's form: a UUID and a 6-digit index). */
const otherBlockId = Buffer.from('5c0e4f2a-8f1b-4c5e-9d3a-1b2c3d4e5f60000001').toString('base64');
const ownBlockId = (part: number) => blockIdFor('0123456789abcdef', part);

let bucket: string;
let containerName: string;
let container: ContainerClient;
let rule: ReplicationRule;

beforeAll(async () => {
  bucket = uniqueName('cleanup');
  containerName = uniqueName('cleanup');
  await makeS3Client().send(new CreateBucketCommand({ Bucket: bucket }));
  container = makeBlobServiceClient().getContainerClient(containerName);
  await container.create();
  const config = validateConfig({
    rules: [
      {
        name: 'r1',
        s3: { bucket, prefix: 'p/' },
        azure: {
          accountUrl: emulatorEnv().azureAccountUrl,
          container: containerName,
          prefix: 'p/',
        },
      },
    ],
  });
  rule = config.rules[0] as ReplicationRule;
});

const deps = () => ({
  clientsOf: () => ({ s3: makeS3Client(), container }),
  isOwnInitiator: localInitiators(REPLICATOR_ACCESS_KEY_PREFIX),
});

describe('Function: cleanup (S3 multipart uploads)', () => {
  it("aborts only the replicator's own uploads older than the threshold; a dry run and a recent upload change nothing", async () => {
    const own = await startUpload(replicatorS3(), bucket, 'p/replica.bin');
    const other = await startUpload(makeS3Client(), bucket, 'p/users.bin');
    const outside = await startUpload(replicatorS3(), bucket, 'elsewhere/replica.bin');
    const all = [own, other, outside].sort();

    // Not old enough yet.
    const recent = await cleanup([rule], deps(), { olderThanMs: HOUR });
    expect(recent.items.filter((item) => item.side === 's3')).toEqual([]);
    expect(recent.counts.find((each) => each.side === 's3')).toMatchObject({
      seen: 2,
      otherWriters: 1,
      recent: 1,
      cleaned: 0,
    });
    expect(await uploadIds(bucket)).toEqual(all);

    const dry = await cleanup([rule], deps(), { olderThanMs: HOUR, dryRun: true, now: later });
    expect(dry.items.filter((item) => item.side === 's3')).toEqual([
      expect.objectContaining({ action: 'would abort', key: 'p/replica.bin', uploadId: own }),
    ]);
    expect(await uploadIds(bucket)).toEqual(all);

    const done = await cleanup([rule], deps(), { olderThanMs: HOUR, now: later });
    expect(done.items.filter((item) => item.side === 's3')).toEqual([
      expect.objectContaining({ action: 'aborted', key: 'p/replica.bin', uploadId: own }),
    ]);
    expect(await uploadIds(bucket)).toEqual([other, outside].sort());
  });

  it("shows each upload's Initiator as S3 shows an IAM user's, from the emulator", async () => {
    const key = 'p/initiator.bin';
    await startUpload(replicatorS3(), bucket, key);
    const out = await makeS3Client().send(
      new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }),
    );
    expect(out.Uploads?.[0]?.Initiator).toEqual({
      ID: `arn:aws:iam::000000000000:user/${emulatorEnv().replicatorAccessKeyId}`,
      DisplayName: emulatorEnv().replicatorAccessKeyId,
    });
    expect(out.Uploads?.[0]?.ChecksumAlgorithm).toBe('CRC32');
  });
});

describe('Function: cleanup (Azure uncommitted blocks)', () => {
  it("deletes only blobs that hold nothing but the replicator's old uncommitted blocks", async () => {
    const stage = (key: string, id: string) =>
      container.getBlockBlobClient(key).stageBlock(id, Buffer.from('block'), 5);
    // Only uncommitted blocks, all the replicator's: cleaned up.
    await stage('p/abandoned.bin', ownBlockId(1));
    await stage('p/abandoned.bin', ownBlockId(2));
    // Only uncommitted blocks, another writer's: kept.
    await stage('p/users.bin', otherBlockId);
    // A committed blob, and a committed empty one, with the replicator's blocks staged: kept.
    await container.getBlockBlobClient('p/committed.bin').upload('committed', 9);
    await stage('p/committed.bin', ownBlockId(1));
    await container.getBlockBlobClient('p/empty.bin').upload('', 0);
    await stage('p/empty.bin', ownBlockId(1));
    // Outside the rule's prefix: not looked at.
    await stage('elsewhere/abandoned.bin', ownBlockId(1));

    const names = async () => {
      const found: string[] = [];
      for await (const blob of container.listBlobsFlat({ includeUncommitedBlobs: true })) {
        found.push(blob.name);
      }
      return found.sort();
    };
    const before = await names();

    const recent = await cleanup([rule], deps(), { olderThanMs: HOUR });
    expect(recent.items.filter((item) => item.side === 'azure')).toEqual([]);
    expect(recent.counts.find((each) => each.side === 'azure')).toMatchObject({
      seen: 2,
      otherWriters: 1,
      recent: 1,
      cleaned: 0,
    });

    const dry = await cleanup([rule], deps(), { olderThanMs: HOUR, dryRun: true, now: later });
    expect(dry.items.filter((item) => item.side === 'azure')).toEqual([
      expect.objectContaining({ action: 'would delete', key: 'p/abandoned.bin', blocks: 2 }),
    ]);
    expect(await names()).toEqual(before);

    const done = await cleanup([rule], deps(), { olderThanMs: HOUR, now: later });
    expect(done.items.filter((item) => item.side === 'azure')).toEqual([
      expect.objectContaining({ action: 'deleted', key: 'p/abandoned.bin', blocks: 2 }),
    ]);
    expect(await names()).toEqual(before.filter((name) => name !== 'p/abandoned.bin'));
    const committed = await container.getBlockBlobClient('p/committed.bin');
    expect((await committed.downloadToBuffer()).toString()).toBe('committed');
    expect((await committed.getBlockList('uncommitted')).uncommittedBlocks).toHaveLength(1);
    expect(await container.getBlockBlobClient('p/empty.bin').exists()).toBe(true);
    expect(
      (await container.getBlockBlobClient('p/users.bin').getBlockList('uncommitted'))
        .uncommittedBlocks,
    ).toHaveLength(1);
  });

  it('keeps a blob committed after it was listed (the delete is If-None-Match: *)', async () => {
    const key = 'p/committed-meanwhile.bin';
    const blob = container.getBlockBlobClient(key);
    await blob.stageBlock(ownBlockId(1), Buffer.from('block'), 5);
    const slow = {
      clientsOf: () => ({ s3: makeS3Client(), container: committingBeforeDelete(key) }),
      isOwnInitiator: deps().isOwnInitiator,
    };
    const done = await cleanup([rule], slow, { olderThanMs: HOUR, now: later });
    expect(done.items.find((item) => item.key === key)).toMatchObject({ action: 'failed' });
    expect((await blob.downloadToBuffer()).toString()).toBe('block');
  });
});

/**
 * The rule's container, except that the blob `key` is committed (by another client) just
 * before cleanup deletes it.
 */
function committingBeforeDelete(key: string): ContainerClient {
  return new Proxy(container, {
    get(target, name, receiver) {
      if (name !== 'getBlockBlobClient') return Reflect.get(target, name, receiver);
      return (blobName: string) => {
        const client = target.getBlockBlobClient(blobName);
        if (blobName !== key) return client;
        return new Proxy(client, {
          get(inner, property, innerReceiver) {
            if (property !== 'delete') return Reflect.get(inner, property, innerReceiver);
            return async (options: unknown) => {
              await container.getBlockBlobClient(key).commitBlockList([ownBlockId(1)]);
              return inner.delete(options as Parameters<typeof inner.delete>[0]);
            };
          },
        });
      };
    },
  });
}

describe('Function: stackInitiators and isReplicatorBlockId', () => {
  it("knows the functions' role's sessions and the stack's session of a rule's role", () => {
    const own = stackInitiators({
      functionsRoleName: 's3-azure-replicator-prod-eu-west-1-lambdaRole',
      sessionName: 's3-azure-replicator-prod',
    });
    const arn = (role: string, session: string) => ({
      ID: `arn:aws:sts::111122223333:assumed-role/${role}/${session}`,
    });
    expect(own(arn('s3-azure-replicator-prod-eu-west-1-lambdaRole', 'fn-copy'))).toBe(true);
    expect(own(arn('CrossAccountWriter', 's3-azure-replicator-prod'))).toBe(true);
    expect(own(arn('CrossAccountWriter', 's3-azure-replicator-dev'))).toBe(false);
    expect(own(arn('SomeoneElse', 'fn-copy'))).toBe(false);
    expect(own({ ID: 'arn:aws:iam::111122223333:user/alice' })).toBe(false);
    expect(own(undefined)).toBe(false);
  });

  it('takes initiators the operator names, exactly or by a prefix ending in / or :', () => {
    const own = namedInitiators(
      ['arn:aws:sts::111122223333:assumed-role/writer/', 'AROAEXAMPLE:'],
      stackInitiators({ sessionName: 's3-azure-replicator-prod' }),
    );
    expect(own({ ID: 'arn:aws:sts::111122223333:assumed-role/writer/any' })).toBe(true);
    expect(own({ ID: 'AROAEXAMPLE:fn-copy' })).toBe(true);
    expect(own({ ID: 'arn:aws:sts::111122223333:assumed-role/x/s3-azure-replicator-prod' })).toBe(
      true,
    );
    expect(own({ ID: 'arn:aws:sts::111122223333:assumed-role/writer2/any' })).toBe(false);
  });

  it("recognises the block ids blockIdFor makes, and no other writer's", () => {
    expect(isReplicatorBlockId(blockIdFor('0123456789abcdef', 1))).toBe(true);
    expect(isReplicatorBlockId(blockIdFor('0123456789abcdef', 50_000))).toBe(true);
    expect(isReplicatorBlockId(otherBlockId)).toBe(false);
    expect(isReplicatorBlockId(Buffer.from('block-000001').toString('base64'))).toBe(false);
  });
});
