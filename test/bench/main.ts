import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import {
  BlobServiceClient,
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { formatBytes, parseSize } from '../../src/core/range-plan.ts';
import { type RunningEmulators, startEmulators } from '../../src/local/emulators.ts';
import { AzureBlobObjectStore } from '../../src/stores/azure-blob.ts';
import { makeS3Client } from '../../src/stores/clients.ts';
import type { ObjectStore, StagedPart } from '../../src/stores/object-store.ts';
import { S3ObjectStore } from '../../src/stores/s3.ts';
import { median, runTimed, type TimedRun } from './run.ts';

/**
 * `npm run bench [-- throughput] [--size 512MiB] [--runs 3] [--json]`
 *
 * Copies one object S3 -> Azure and Azure -> S3 with `s3az copy` and `rclone copyto`, on the
 * same emulators in one run, alternating, and measures the emulators' own limit (a read-only
 * pass of the source and a write-only pass into the destination with the same parallelism).
 * Also copies a 64 MiB object with s3az to compare peak memory.
 */
interface Options {
  size: number;
  runs: number;
  json: boolean;
  partSize: number;
  concurrency: number;
}

const MiB = 1024 * 1024;
const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, 'src/cli/s3az.js');
const LIMIT = join(ROOT, 'test/bench/limit.ts');
const SMALL = 64 * MiB;

function parseOptions(argv: string[]): Options {
  const options: Options = {
    size: 512 * MiB,
    runs: 3,
    json: false,
    partSize: 8 * MiB,
    concurrency: 8,
  };
  const args = [...argv];
  if (args[0] === 'throughput') args.shift();
  else if (args[0] !== undefined && !args[0].startsWith('--')) {
    throw new Error(`unknown benchmark "${args[0]}" (known: throughput)`);
  }
  for (let i = 0; i < args.length; i++) {
    const name = args[i];
    const value = args[i + 1];
    if (name === '--json') options.json = true;
    else if (name === '--size' && value) options.size = parseSize(args[++i] ?? '');
    else if (name === '--runs' && value) options.runs = Number(args[++i]);
    else if (name === '--part-size' && value) options.partSize = parseSize(args[++i] ?? '');
    else if (name === '--concurrency' && value) options.concurrency = Number(args[++i]);
    else
      throw new Error(
        `unknown option ${name} (known: --size, --runs, --part-size, --concurrency, --json)`,
      );
  }
  if (!Number.isInteger(options.runs) || options.runs < 1)
    throw new Error('--runs must be a whole number >= 1');
  return options;
}

function hasRclone(): boolean {
  try {
    execFileSync('rclone', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function createObject(
  stores: ObjectStore[],
  key: string,
  size: number,
  partSize: number,
): Promise<string> {
  const write = { properties: {}, metadata: {}, condition: { kind: 'any' as const } };
  const hash = createHash('sha256');
  const uploads = await Promise.all(
    stores.map((store) => store.beginStaged(key, write, 'benchsource00000')),
  );
  const parts: StagedPart[][] = stores.map(() => []);
  for (let start = 0, n = 1; start < size; start += partSize, n++) {
    const body = randomBytes(Math.min(partSize, size - start));
    hash.update(body);
    await Promise.all(
      stores.map(async (store, index) => {
        const upload = uploads[index];
        if (upload) parts[index]?.push(await store.stagePart(upload, n, body));
      }),
    );
  }
  await Promise.all(
    stores.map((store, index) => {
      const upload = uploads[index];
      return upload
        ? store.commitStaged(upload, parts[index] ?? [], { ...write, expectedSize: size })
        : undefined;
    }),
  );
  return hash.digest('hex');
}

async function sha256Of(store: ObjectStore, key: string): Promise<string> {
  const hash = createHash('sha256');
  const { body } = await store.get(key);
  for await (const chunk of body as AsyncIterable<Uint8Array>) hash.update(chunk);
  return hash.digest('hex');
}

type Direction = 's3-to-azure' | 'azure-to-s3';
type Tool = 's3az' | 'rclone';

interface Sample {
  tool: Tool;
  direction: Direction;
  size: number;
  seconds: number;
  mibPerSecond: number;
  maxRssBytes: number;
  transfer?: string;
  verified: 'size' | 'sha256';
}

async function main(): Promise<void> {
  // The pinned AWS SDK supports Node 20; its notice about future releases is noise here.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const options = parseOptions(process.argv.slice(2));
  const log = (line: string) => {
    if (!options.json) process.stderr.write(`${line}\n`);
  };
  const rclone = hasRclone();
  if (!rclone) {
    process.stderr.write(
      'rclone not found: install it with "apt-get update && apt-get install -y rclone"\n',
    );
  }
  const temp = mkdtempSync(join(tmpdir(), 's3az-bench-'));
  let emulators: RunningEmulators | undefined;
  const cleanup = async () => {
    await emulators?.stop();
    rmSync(temp, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup().finally(() => process.exit(130));
  });
  try {
    emulators = await startEmulators();
    const env = emulators;
    const s3Client = makeS3Client({
      AWS_ENDPOINT_URL_S3: env.s3Endpoint,
      AWS_REGION: env.region,
      AWS_ACCESS_KEY_ID: env.accessKeyId,
      AWS_SECRET_ACCESS_KEY: env.secretAccessKey,
    });
    await s3Client.send(new CreateBucketCommand({ Bucket: 'bench' }));
    const containerClient = BlobServiceClient.fromConnectionString(
      env.azureConnectionString,
    ).getContainerClient('bench');
    await containerClient.create();
    const s3 = new S3ObjectStore(s3Client, 'bench');
    const azure = new AzureBlobObjectStore(containerClient);

    log(
      `creating ${formatBytes(options.size)} and ${formatBytes(SMALL)} source objects on both sides...`,
    );
    const bigSha = await createObject([s3, azure], 'src/big.bin', options.size, options.partSize);
    await createObject([s3, azure], 'src/small.bin', SMALL, options.partSize);

    const s3azEnv: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      AWS_ENDPOINT_URL_S3: env.s3Endpoint,
      AWS_REGION: env.region,
      AWS_ACCESS_KEY_ID: env.accessKeyId,
      AWS_SECRET_ACCESS_KEY: env.secretAccessKey,
      AZURE_STORAGE_CONNECTION_STRING: env.azureConnectionString,
    };
    const rcloneConfig = join(temp, 'rclone.conf');
    writeFileSync(rcloneConfig, '');
    // rclone's S3 backend fails with this machine's AWS_CA_BUNDLE, so it gets none.
    const rcloneEnv: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: temp,
      RCLONE_CONFIG: rcloneConfig,
      RCLONE_CONFIG_S3_TYPE: 's3',
      RCLONE_CONFIG_S3_PROVIDER: 'Other',
      RCLONE_CONFIG_S3_ENDPOINT: env.s3Endpoint,
      RCLONE_CONFIG_S3_REGION: env.region,
      RCLONE_CONFIG_S3_ACCESS_KEY_ID: env.accessKeyId,
      RCLONE_CONFIG_S3_SECRET_ACCESS_KEY: env.secretAccessKey,
      RCLONE_CONFIG_S3_FORCE_PATH_STYLE: 'true',
      // rclone sends objects under 200 MiB in one PUT by default; the emulator takes 11 MiB.
      RCLONE_CONFIG_S3_UPLOAD_CUTOFF: '8M',
      // rclone 1.60 builds https://<account>.<endpoint> URLs and knows the emulator only with
      // Azurite's well-known key, so it reaches this emulator through a container SAS URL.
      RCLONE_CONFIG_AZ_TYPE: 'azureblob',
      RCLONE_CONFIG_AZ_SAS_URL: `${env.azureAccountUrl}/bench?${generateBlobSASQueryParameters(
        {
          containerName: 'bench',
          permissions: ContainerSASPermissions.parse('racwdl'),
          expiresOn: new Date(Date.now() + 6 * 3600_000),
        },
        new StorageSharedKeyCredential(env.azureAccountName, env.azureAccountKey),
      ).toString()}`,
    };

    const samples: Sample[] = [];
    let counter = 0;
    const copy = async (
      tool: Tool,
      direction: Direction,
      size: number,
      verifyContent: boolean,
    ): Promise<Sample> => {
      counter += 1;
      const sourceKey = size === SMALL ? 'src/small.bin' : 'src/big.bin';
      const destinationKey = `dst/${tool}-${counter}.bin`;
      const [source, destination] = direction === 's3-to-azure' ? [s3, azure] : [azure, s3];
      const sourceUri = `${direction === 's3-to-azure' ? 's3' : 'az'}://bench/${sourceKey}`;
      const destinationUri = `${direction === 's3-to-azure' ? 'az' : 's3'}://bench/${destinationKey}`;
      let run: TimedRun;
      if (tool === 's3az') {
        run = await runTimed(
          process.execPath,
          [
            BIN,
            'copy',
            sourceUri,
            destinationUri,
            '--json',
            '--part-size',
            String(options.partSize),
            '--concurrency',
            String(options.concurrency),
          ],
          s3azEnv,
        );
      } else {
        const [from, to] = direction === 's3-to-azure' ? ['s3', 'az'] : ['az', 's3'];
        run = await runTimed(
          'rclone',
          ['copyto', `${from}:bench/${sourceKey}`, `${to}:bench/${destinationKey}`],
          rcloneEnv,
        );
      }
      if (run.code !== 0) {
        throw new Error(
          `${tool} ${direction} failed (exit ${run.code}): ${run.stderr.trim().split('\n').slice(-3).join(' | ')}`,
        );
      }
      const head = await destination.head(destinationKey);
      if (head?.size !== size)
        throw new Error(`${tool} ${direction} wrote ${head?.size} bytes, expected ${size}`);
      if (
        verifyContent &&
        (await sha256Of(destination, destinationKey)) !==
          (size === SMALL ? await sha256Of(source, sourceKey) : bigSha)
      ) {
        throw new Error(`${tool} ${direction}: the copy differs from the source`);
      }
      await destination.delete(destinationKey);
      const transfer =
        tool === 's3az'
          ? (JSON.parse(run.stdout) as { transfer?: string[] }).transfer?.join(',')
          : undefined;
      const sample: Sample = {
        tool,
        direction,
        size,
        seconds: run.seconds,
        mibPerSecond: size / MiB / run.seconds,
        maxRssBytes: run.maxRssBytes,
        ...(transfer !== undefined && { transfer }),
        verified: verifyContent ? 'sha256' : 'size',
      };
      log(
        `  ${tool.padEnd(6)} ${direction.padEnd(12)} ${formatBytes(size).padStart(10)}  ${run.seconds.toFixed(2)} s  ${sample.mibPerSecond.toFixed(1)} MiB/s  RSS ${(run.maxRssBytes / MiB).toFixed(0)} MiB`,
      );
      return sample;
    };

    const tools: Tool[] = rclone ? ['s3az', 'rclone'] : ['s3az'];
    for (let round = 0; round < options.runs; round++) {
      log(`round ${round + 1} of ${options.runs}`);
      const order = round % 2 === 0 ? tools : [...tools].reverse();
      for (const direction of ['s3-to-azure', 'azure-to-s3'] as const) {
        for (const tool of order)
          samples.push(await copy(tool, direction, options.size, round === 0));
      }
    }
    log('memory reference: s3az on a 64 MiB object');
    for (const direction of ['s3-to-azure', 'azure-to-s3'] as const) {
      samples.push(await copy('s3az', direction, SMALL, false));
    }

    log('emulator limit: read-only and write-only passes');
    const limitEnv = { ...s3azEnv, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    const pass = async (mode: 'read' | 'write', side: 's3' | 'azure'): Promise<number> => {
      const results: number[] = [];
      for (let round = 0; round < options.runs; round++) {
        const key = mode === 'read' ? 'src/big.bin' : `limit/${mode}-${round}.bin`;
        const run = await runTimed(
          process.execPath,
          [
            '--import',
            'tsx',
            LIMIT,
            mode,
            side,
            'bench',
            key,
            String(options.size),
            String(options.partSize),
            String(options.concurrency),
          ],
          limitEnv,
        );
        if (run.code !== 0)
          throw new Error(`limit pass ${mode} ${side} failed: ${run.stderr.trim()}`);
        results.push(options.size / MiB / (JSON.parse(run.stdout) as { seconds: number }).seconds);
      }
      return median(results);
    };
    const limits = {
      's3-to-azure': { read: await pass('read', 's3'), write: await pass('write', 'azure') },
      'azure-to-s3': { read: await pass('read', 'azure'), write: await pass('write', 's3') },
    };

    const report = (['s3-to-azure', 'azure-to-s3'] as const).map((direction) => {
      const of = (tool: Tool, size = options.size) =>
        samples.filter((s) => s.tool === tool && s.direction === direction && s.size === size);
      const s3az = of('s3az');
      const peer = of('rclone');
      const s3azSeconds = median(s3az.map((s) => s.seconds));
      const rcloneSeconds = peer.length > 0 ? median(peer.map((s) => s.seconds)) : undefined;
      const limit = Math.min(limits[direction].read, limits[direction].write);
      const s3azRate = options.size / MiB / s3azSeconds;
      const s3azRss = Math.max(...s3az.map((s) => s.maxRssBytes));
      const smallRss = Math.max(...of('s3az', SMALL).map((s) => s.maxRssBytes));
      return {
        direction,
        s3az: {
          seconds: s3azSeconds,
          mibPerSecond: s3azRate,
          maxRssBytes: s3azRss,
          transfer: s3az[0]?.transfer,
        },
        rclone:
          rcloneSeconds === undefined
            ? undefined
            : {
                seconds: rcloneSeconds,
                mibPerSecond: options.size / MiB / rcloneSeconds,
                maxRssBytes: Math.max(...peer.map((s) => s.maxRssBytes)),
              },
        ratioToRclone: rcloneSeconds === undefined ? undefined : rcloneSeconds / s3azSeconds,
        limit: {
          readMibPerSecond: limits[direction].read,
          writeMibPerSecond: limits[direction].write,
          mibPerSecond: limit,
        },
        fractionOfLimit: s3azRate / limit,
        rss64MiB: smallRss,
        rssRatioTo64MiB: s3azRss / smallRss,
      };
    });

    if (options.json) {
      process.stdout.write(
        `${JSON.stringify({ size: options.size, runs: options.runs, partSize: options.partSize, concurrency: options.concurrency, report, samples }, null, 2)}\n`,
      );
    } else {
      const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
      const lines = [
        '',
        `${formatBytes(options.size)} object, ${options.runs} runs each, medians; part size ${formatBytes(options.partSize)}, concurrency ${options.concurrency}`,
        '',
        '| direction | s3az s | s3az MiB/s | rclone s | rclone MiB/s | ratio (rclone s / s3az s) | limit MiB/s (read / write) | s3az of limit | s3az peak RSS | rclone peak RSS | s3az RSS vs 64 MiB copy |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
        ...report.map((row) =>
          [
            `${row.direction} (${row.s3az.transfer})`,
            row.s3az.seconds.toFixed(2),
            row.s3az.mibPerSecond.toFixed(1),
            row.rclone ? row.rclone.seconds.toFixed(2) : 'n/a',
            row.rclone ? row.rclone.mibPerSecond.toFixed(1) : 'n/a',
            row.ratioToRclone ? row.ratioToRclone.toFixed(2) : 'n/a',
            `${row.limit.mibPerSecond.toFixed(1)} (${row.limit.readMibPerSecond.toFixed(0)} / ${row.limit.writeMibPerSecond.toFixed(0)})`,
            `${(row.fractionOfLimit * 100).toFixed(0)}%`,
            mb(row.s3az.maxRssBytes),
            row.rclone ? mb(row.rclone.maxRssBytes) : 'n/a',
            `${row.rssRatioTo64MiB.toFixed(2)}x (${mb(row.rss64MiB)})`,
          ]
            .join(' | ')
            .replace(/^/, '| ')
            .concat(' |'),
        ),
        '',
        'ratio > 1 means s3az is faster. Limit = min(read-only pass, write-only pass) with the same part size and concurrency.',
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
  } finally {
    await cleanup();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
