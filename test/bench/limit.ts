import { createHash, randomBytes } from 'node:crypto';
import { BlobServiceClient } from '@azure/storage-blob';
import { runPool } from '../../src/copy/pool.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { makeS3Client } from '../../src/stores/clients.ts';
import type { ObjectStore, StagedPart } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';

/**
 * One pass of the emulators' own limit, run in its own process so it does not share the
 * benchmark's event loop: `read` GETs every range of an object in parallel and drops the bytes;
 * `write` stages the same number of parts from one reused buffer (with its MD5, as the copier
 * sends) and commits them. Prints `{"seconds": S}`.
 *
 * Usage: limit.ts <read|write> <s3|azure> <container> <key> <size> <partSize> <concurrency>
 */
const [mode, side, container, key, sizeText, partText, concurrencyText] = process.argv.slice(2);
const size = Number(sizeText);
const partSize = Number(partText);
const concurrency = Number(concurrencyText);
if (!mode || !side || !container || !key)
  throw new Error(
    'usage: limit.ts <read|write> <s3|azure> <container> <key> <size> <partSize> <concurrency>',
  );

const store: ObjectStore =
  side === 's3'
    ? new S3ObjectStore(makeS3Client(), container)
    : new AzureBlobObjectStore(
        BlobServiceClient.fromConnectionString(
          process.env.AZURE_STORAGE_CONNECTION_STRING ?? '',
        ).getContainerClient(container),
      );

const ranges = Array.from({ length: Math.ceil(size / partSize) }, (_, index) => ({
  partNumber: index + 1,
  start: index * partSize,
  end: Math.min(size, (index + 1) * partSize) - 1,
}));

const started = process.hrtime.bigint();
if (mode === 'read') {
  await runPool(ranges, concurrency, async (range) => {
    const object = await store.get(key, { range });
    for await (const _chunk of object.body) {
      // drop the bytes
    }
  });
} else {
  const buffer = randomBytes(partSize);
  const write = { properties: {}, metadata: {}, condition: { kind: 'any' as const } };
  const upload = await store.beginStaged(key, write, 'benchlimit000000');
  const staged: StagedPart[] = [];
  await runPool(ranges, concurrency, async (range) => {
    const body = buffer.subarray(0, range.end - range.start + 1);
    const md5 = createHash('md5').update(body).digest();
    staged.push(await store.stagePart(upload, range.partNumber, body, { md5 }));
  });
  await store.commitStaged(upload, staged, { ...write, expectedSize: size });
}
process.stdout.write(
  `${JSON.stringify({ seconds: Number(process.hrtime.bigint() - started) / 1e9 })}\n`,
);
