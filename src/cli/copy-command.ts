import { basename } from 'node:path/posix';
import { type CopyObjectResult, copyObject } from '../copy/copy-object.ts';
import { runPool } from '../copy/pool.ts';
import { PullMemory } from '../copy/pull-memory.ts';
import { joinKey, relativeKey } from '../core/keys.ts';
import { MIN_MEMORY_BUDGET } from '../core/memory-plan.ts';
import { formatBytes, parseSize } from '../core/range-plan.ts';
import { PreconditionFailedError, ReplicatorError, UsageError } from '../errors.ts';
import { AzureBlobObjectStore } from '../stores/azure-blob.ts';
import {
  accountNameOf,
  defaultAccountUrl,
  type Environment,
  makeBlobServiceClient,
  makeS3Client,
} from '../stores/clients.ts';
import type { ListedObject, ObjectStore } from '../stores/object-store.ts';
import { S3ObjectStore } from '../stores/s3.ts';
import { DEFAULT_CONCURRENCY, DEFAULT_MEMORY, DEFAULT_PART_SIZE } from './copy-defaults.ts';
import { ProgressBar } from './progress.ts';
import { type Location, parseLocation } from './uri.ts';

export interface CopyCommandOptions {
  partSize?: string;
  concurrency?: string;
  memory?: string;
  stream?: boolean;
  json?: boolean;
}

const MAX_CONCURRENCY = 64;

/** Summary printed by `--json`. */
export interface CopySummary {
  objects: number;
  failed: number;
  bytes: number;
  seconds: number;
  mibPerSecond: number;
  transfer: Array<'pull' | 'stream'>;
  /** Peak resident set size of this process, in bytes. */
  maxRssBytes: number;
}

/** Output sinks, injectable for tests. */
export interface CommandIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  /** Fires on Ctrl-C: copies stop, and open staged uploads are aborted. */
  signal?: AbortSignal;
}

/**
 * Whether requests to `accountUrl` would be signed by Microsoft Entra ID alone: the
 * environment holds no connection string, key or SAS for that account (the order
 * makeBlobServiceClient tries them in).
 */
function entraIdOnly(accountUrl: string, env: Environment): boolean {
  let configured: string | undefined;
  try {
    configured = defaultAccountUrl(env);
  } catch {
    return false;
  }
  const same = (a: string, b: string) =>
    a.replace(/\/+$/, '').toLowerCase() === b.replace(/\/+$/, '').toLowerCase();
  const sameAccount = configured !== undefined && same(configured, accountUrl);
  if (env.AZURE_STORAGE_CONNECTION_STRING && sameAccount) return false;
  const named = sameAccount || env.AZURE_STORAGE_ACCOUNT === accountNameOf(accountUrl);
  return !(named && (env.AZURE_STORAGE_KEY || env.AZURE_STORAGE_SAS_TOKEN));
}

/** The one-line refusal for an account URL the environment has no credential for. */
function noCredentialError(
  accountUrl: string,
  container: string,
  why: string,
  env: Environment,
  cause?: unknown,
): UsageError {
  const account = accountNameOf(accountUrl);
  let configured: string | undefined;
  try {
    configured = defaultAccountUrl(env);
  } catch {
    configured = undefined;
  }
  const elsewhere = configured ? `the environment's credential is for ${configured}, and ` : '';
  return new UsageError(
    `${accountUrl}/${container}: no credential for the account "${account}" (${elsewhere}${why}); set AZURE_STORAGE_ACCOUNT=${account} with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or AZURE_STORAGE_CONNECTION_STRING for that account`,
    cause === undefined ? undefined : { cause },
  );
}

/** `error`, or the error it wraps, where @azure/identity found no usable sign-in. */
function signInFailure(error: unknown): Error | undefined {
  for (let each = error; each instanceof Error; each = each.cause) {
    if (
      /^(CredentialUnavailableError|AuthenticationError|AggregateAuthenticationError)$/.test(
        each.name,
      )
    ) {
      return each;
    }
  }
  return undefined;
}

/** Checks the bucket or container; a sign-in failure names the account and the cause. */
async function checkLocation(store: ObjectStore, location: Location): Promise<void> {
  try {
    await store.checkContainer();
  } catch (error) {
    const signIn = signInFailure(error);
    if (
      location.side === 'azure' &&
      location.accountUrl !== undefined &&
      entraIdOnly(location.accountUrl, process.env) &&
      signIn
    ) {
      const reason = (signIn.message.split('\n')[0] ?? '').replace(/\.$/, '');
      throw noCredentialError(
        location.accountUrl,
        location.container,
        `Microsoft Entra ID sign-in found none: ${reason}`,
        process.env,
        error,
      );
    }
    throw error;
  }
}

async function storeFor(location: Location, cache: Map<string, ObjectStore>): Promise<ObjectStore> {
  const id =
    location.side === 's3'
      ? `s3:${location.bucket}`
      : `az:${location.accountUrl ?? ''}:${location.container}`;
  const cached = cache.get(id);
  if (cached) return cached;
  // Microsoft Entra ID tokens are only sent over https: an emulator URL (http) for an account
  // the environment has no key for cannot work, whatever is signed in.
  if (
    location.side === 'azure' &&
    location.accountUrl?.startsWith('http:') &&
    entraIdOnly(location.accountUrl, process.env)
  ) {
    throw noCredentialError(
      location.accountUrl,
      location.container,
      'Microsoft Entra ID tokens need https',
      process.env,
    );
  }
  const store =
    location.side === 's3'
      ? new S3ObjectStore(makeS3Client(), location.bucket)
      : new AzureBlobObjectStore(
          (await makeBlobServiceClient(location.accountUrl)).getContainerClient(location.container),
        );
  cache.set(id, store);
  return store;
}

function parseConcurrency(text: string | undefined): number {
  if (text === undefined) return DEFAULT_CONCURRENCY;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > MAX_CONCURRENCY) {
    throw new UsageError(
      `--concurrency must be a whole number from 1 to ${MAX_CONCURRENCY}, got "${text}"`,
    );
  }
  return value;
}

function parseMemory(text: string | undefined): number {
  const bytes = parseSize(text ?? DEFAULT_MEMORY);
  if (bytes < MIN_MEMORY_BUDGET) {
    throw new UsageError(
      `--memory must be at least ${formatBytes(MIN_MEMORY_BUDGET)}, got "${text}"`,
    );
  }
  return bytes;
}

/** `s3az copy <source> <destination>`: one object, or every object under a prefix. */
export async function runCopyCommand(
  sourceText: string,
  destinationText: string,
  options: CopyCommandOptions,
  io: CommandIo,
): Promise<CopySummary> {
  const partSize = options.partSize === undefined ? DEFAULT_PART_SIZE : parseSize(options.partSize);
  const concurrency = parseConcurrency(options.concurrency);
  const memory = parseMemory(options.memory);
  const sourceLocation = parseLocation(sourceText);
  const destinationLocation = parseLocation(destinationText);
  const prefixCopy = sourceLocation.key === '' || sourceLocation.key.endsWith('/');
  if (prefixCopy && destinationLocation.key !== '' && !destinationLocation.key.endsWith('/')) {
    throw new UsageError(
      `${destinationText}: copying a prefix needs a destination prefix ending in "/" (or a bare bucket/container)`,
    );
  }

  const cache = new Map<string, ObjectStore>();
  const source = await storeFor(sourceLocation, cache);
  const destination = await storeFor(destinationLocation, cache);
  // Both at once: each is a round trip (and the first request of each SDK sets itself up).
  // The source's failure is reported first, whichever answered first.
  for (const check of await Promise.allSettled([
    checkLocation(source, sourceLocation),
    checkLocation(destination, destinationLocation),
  ])) {
    if (check.status === 'rejected') throw check.reason;
  }

  const started = Date.now();
  const pullMemory = new PullMemory();
  const progress = io.stderr.isTTY && !options.json ? new ProgressBar(io.stderr) : undefined;
  const log = (line: string) => {
    progress?.done();
    io.stderr.write(`${line}\n`);
  };
  const results: CopyObjectResult[] = [];
  const failures: string[] = [];

  const copyOne = async (
    sourceKey: string,
    destinationKey: string,
    rangeConcurrency: number,
    memoryBudget = memory,
  ) => {
    const result = await copyWithRedecide({
      source,
      sourceKey,
      destination,
      destinationKey,
      partSize,
      concurrency: rangeConcurrency,
      memoryBudget,
      transfer: options.stream ? 'stream' : 'auto',
      pullMemory,
      log,
      ...(io.signal && { signal: io.signal }),
      ...(progress && {
        onProgress: (done: number, total: number) =>
          progress.update(basename(sourceKey), done, total),
      }),
    });
    results.push(result);
    if (!options.json && !progress) {
      io.stderr.write(
        `copied ${source.describe(sourceKey)} -> ${destination.describe(destinationKey)} (${result.size} bytes, ${result.transfer})\n`,
      );
    }
  };

  if (!prefixCopy) {
    const destinationKey =
      destinationLocation.key === '' || destinationLocation.key.endsWith('/')
        ? joinKey(destinationLocation.key, basename(sourceLocation.key))
        : destinationLocation.key;
    await copyOne(sourceLocation.key, destinationKey, concurrency);
  } else {
    const objects = await listAll(source, sourceLocation.key);
    const small = objects.filter((item) => item.size <= partSize);
    const large = objects.filter((item) => item.size > partSize);
    const attempt = async (item: ListedObject, rangeConcurrency: number, budget?: number) => {
      const destinationKey = joinKey(
        destinationLocation.key,
        relativeKey(sourceLocation.key, item.key),
      );
      try {
        await copyOne(item.key, destinationKey, rangeConcurrency, budget);
      } catch (error) {
        if (io.signal?.aborted) throw error;
        const message = error instanceof Error ? error.message : String(error);
        failures.push(message);
        log(`failed: ${message}`);
      }
    };
    // Small objects run side by side, as many as the memory holds whole; large ones one at a
    // time with parallel ranges, each within the whole budget.
    const side = Math.max(
      1,
      Math.min(concurrency, Math.floor(memory / Math.min(partSize, memory))),
    );
    const share = Math.max(MIN_MEMORY_BUDGET, Math.floor(memory / side));
    await runPool(small, side, (item) => attempt(item, 1, share));
    for (const item of large) await attempt(item, concurrency);
  }
  progress?.done();

  const seconds = (Date.now() - started) / 1000;
  const bytes = results.reduce((sum, result) => sum + result.size, 0);
  const summary: CopySummary = {
    objects: results.length,
    failed: failures.length,
    bytes,
    seconds,
    mibPerSecond: seconds > 0 ? bytes / 1024 / 1024 / seconds : 0,
    transfer: [...new Set(results.map((result) => result.transfer))],
    // resourceUsage reports kilobytes.
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  if (options.json) io.stdout.write(`${JSON.stringify(summary)}\n`);
  if (failures.length > 0) {
    throw new ReplicatorError(
      'permanent',
      `${failures.length} of ${failures.length + results.length} objects failed to copy`,
    );
  }
  return summary;
}

/** A commit that loses a race with another writer re-reads the destination and copies again. */
async function copyWithRedecide(
  request: Parameters<typeof copyObject>[0],
): Promise<CopyObjectResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await copyObject(request);
    } catch (error) {
      if (!(error instanceof PreconditionFailedError) || attempt >= 3) throw error;
    }
  }
}

async function listAll(store: ObjectStore, prefix: string): Promise<ListedObject[]> {
  const all: ListedObject[] = [];
  let token: string | undefined;
  do {
    const page = await store.list(prefix, token === undefined ? {} : { continuationToken: token });
    all.push(...page.items);
    token = page.continuationToken;
  } while (token !== undefined);
  return all;
}
