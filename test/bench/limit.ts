import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { type MeteredProcess, startCpuMeter } from './cpu.ts';
import {
  blockId,
  inParallel,
  makeBenchContainerClient,
  makeBenchS3Client,
  type Side,
  type StoreEnvironment,
} from './stores.ts';

/**
 * One pass of the emulators' own limit, run as its own process (`node --import tsx limit.ts`)
 * so that it shares no event loop with the benchmark. It does what a copier's reading half or
 * writing half does, with the same part size and concurrency, and nothing else:
 *
 * - `read`: ranged GETs covering the whole object, `concurrency` at a time; bytes are counted
 *   and dropped.
 * - `write`: a staged upload of the same number of parts, each a slice of one reused random
 *   buffer whose checksum is computed once (S3: CRC32 per part, as the copier sends; Azure:
 *   transactional MD5), then the commit.
 *
 * Prints `{"seconds":S,"bytes":N,"cpuSeconds":C,"cpu":{...}}`: the pass's duration, its own CPU
 * time, and the CPU of the processes named in `BENCH_METER` (a JSON list of `{name, pid}`) and
 * of the machine, all over the same window, from the first request to the last response.
 * Environment: the {@link StoreEnvironment} variables, and `BENCH_METER`.
 *
 * Usage: `limit.ts <read|write> <s3|azure> <container> <key> <size> <partSize> <concurrency>`
 */
const USAGE =
  'usage: limit.ts <read|write> <s3|azure> <container> <key> <size> <partSize> <concurrency>';

const S3_MIN_PART_SIZE = 5 * 1024 * 1024;

interface Range {
  partNumber: number;
  start: number;
  /** Inclusive. */
  end: number;
}

function environment(): StoreEnvironment {
  const names = [
    'AWS_ENDPOINT_URL_S3',
    'AWS_REGION',
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AZURE_STORAGE_CONNECTION_STRING',
  ] as const;
  const env: Partial<StoreEnvironment> = {};
  for (const name of names) {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set`);
    env[name] = value;
  }
  return env as StoreEnvironment;
}

async function readPass(
  env: StoreEnvironment,
  side: Side,
  container: string,
  key: string,
  ranges: Range[],
  concurrency: number,
): Promise<number> {
  const s3 = side === 's3' ? makeBenchS3Client(env) : undefined;
  const blob =
    side === 'azure' ? makeBenchContainerClient(env, container).getBlobClient(key) : undefined;
  let bytes = 0;
  await inParallel(ranges, concurrency, async (range) => {
    const body = s3
      ? ((
          await s3.send(
            new GetObjectCommand({
              Bucket: container,
              Key: key,
              Range: `bytes=${range.start}-${range.end}`,
            }),
          )
        ).Body as Readable | undefined)
      : (await blob?.download(range.start, range.end - range.start + 1))?.readableStreamBody;
    if (!body) throw new Error(`${side}:${key} bytes ${range.start}-${range.end}: no body`);
    for await (const chunk of body as AsyncIterable<Buffer>) bytes += chunk.length;
  });
  return bytes;
}

async function writePass(
  env: StoreEnvironment,
  side: Side,
  container: string,
  key: string,
  ranges: Range[],
  partSize: number,
  concurrency: number,
): Promise<number> {
  const buffer = randomBytes(partSize);
  // Parts are slices of one buffer, so at most two checksums (a full part, the last part).
  const checksums = new Map<number, { crc32: string; md5: Buffer }>();
  const checksumOf = (body: Buffer) => {
    let known = checksums.get(body.length);
    if (!known) {
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32(body));
      known = {
        crc32: crc.toString('base64'),
        md5: createHash('md5').update(body).digest(),
      };
      checksums.set(body.length, known);
    }
    return known;
  };
  const bodyOf = (range: Range) => buffer.subarray(0, range.end - range.start + 1);
  for (const range of ranges) checksumOf(bodyOf(range));
  let bytes = 0;

  if (side === 's3') {
    const s3 = makeBenchS3Client(env);
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: container, Key: key, ChecksumAlgorithm: 'CRC32' }),
    );
    const parts: { PartNumber: number; ETag: string; ChecksumCRC32: string }[] = [];
    try {
      await inParallel(ranges, concurrency, async (range) => {
        const body = bodyOf(range);
        const { crc32: checksum } = checksumOf(body);
        const { ETag } = await s3.send(
          new UploadPartCommand({
            Bucket: container,
            Key: key,
            UploadId,
            PartNumber: range.partNumber,
            Body: body,
            ContentLength: body.length,
            ChecksumCRC32: checksum,
          }),
        );
        parts.push({ PartNumber: range.partNumber, ETag: ETag ?? '', ChecksumCRC32: checksum });
        bytes += body.length;
      });
      await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: container,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: parts.sort((a, b) => a.PartNumber - b.PartNumber) },
        }),
      );
    } catch (error) {
      await s3
        .send(new AbortMultipartUploadCommand({ Bucket: container, Key: key, UploadId }))
        .catch(() => undefined);
      throw error;
    }
  } else {
    const blob = makeBenchContainerClient(env, container).getBlockBlobClient(key);
    await inParallel(ranges, concurrency, async (range) => {
      const body = bodyOf(range);
      await blob.stageBlock(blockId(range.partNumber), body, body.length, {
        transactionalContentMD5: checksumOf(body).md5,
      });
      bytes += body.length;
    });
    await blob.commitBlockList(ranges.map((range) => blockId(range.partNumber)));
  }
  return bytes;
}

async function main(): Promise<void> {
  const [mode, side, container, key, sizeText, partText, concurrencyText] = process.argv.slice(2);
  const size = Number(sizeText);
  const partSize = Number(partText);
  const concurrency = Number(concurrencyText);
  if (
    (mode !== 'read' && mode !== 'write') ||
    (side !== 's3' && side !== 'azure') ||
    !container ||
    !key ||
    !(size > 0 && partSize > 0 && concurrency > 0)
  ) {
    throw new Error(USAGE);
  }
  const env = environment();
  // As s3az's range planner does: S3 parts other than the last are at least 5 MiB.
  const step = mode === 'write' && side === 's3' ? Math.max(partSize, S3_MIN_PART_SIZE) : partSize;
  const ranges: Range[] = Array.from({ length: Math.ceil(size / step) }, (_, index) => ({
    partNumber: index + 1,
    start: index * step,
    end: Math.min(size, (index + 1) * step) - 1,
  }));
  const metered = JSON.parse(process.env.BENCH_METER ?? '[]') as MeteredProcess[];
  const meter = startCpuMeter(metered);
  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  const bytes =
    mode === 'read'
      ? await readPass(env, side, container, key, ranges, concurrency)
      : await writePass(env, side, container, key, ranges, step, concurrency);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = meter.stop();
  const own = process.cpuUsage(cpuBefore);
  if (bytes !== size) throw new Error(`${mode} pass moved ${bytes} bytes, expected ${size}`);
  const cpuSeconds = (own.user + own.system) / 1e6;
  process.stdout.write(`${JSON.stringify({ seconds, bytes, cpuSeconds, cpu })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`limit: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
