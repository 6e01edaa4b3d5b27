import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { EventGridDelivery } from './event-grid-shim.ts';
import { EVENT_GRID_STATUS_PATH } from './headers.ts';

/** Endpoints and credentials of a running local stack. */
export interface RunningEmulators {
  /** S3 and SQS endpoint (path-style S3), e.g. `http://127.0.0.1:4566`. */
  s3Endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /**
   * A second access key the S3 emulator accepts (same secret), for the replicator itself:
   * its writes' notifications name it as their principal (`AWS:<key>`), as S3 names the
   * IAM principal that made a change, so that they are told from the users' writes.
   */
  replicatorAccessKeyId: string;
  azureAccountName: string;
  azureAccountKey: string;
  /** Public Azure account URL (the shim in front of Azurite). */
  azureAccountUrl: string;
  /** Azurite itself, without the shim (it answers 501 to Put Block From URL). */
  azuriteAccountUrl: string;
  /** Connection string for the public Azure endpoint (carries the account key). */
  azureConnectionString: string;
  /** Events the Event Grid shim has not delivered to the webhook yet (0 without `eventGrid`). */
  eventGridPending(): Promise<number>;
  /** Stops every emulator process and resolves when they have exited. */
  stop(): Promise<void>;
}

/** How to start the local stack; every option has a default. */
export interface StartEmulatorsOptions {
  /** Public S3 + SQS port; 0 or absent for any free port. */
  s3Port?: number;
  /** Public Azure Blob port; 0 or absent for any free port. */
  azurePort?: number;
  /** Address the public endpoints bind to; default 127.0.0.1. */
  host?: string;
  /** Keep Azurite's data in this folder instead of in memory. */
  azuriteDataDir?: string;
  /** Receives what the emulators write on stderr. */
  log?: (line: string) => void;
  /** Publish Azure blob writes and deletes as Event Grid deliveries to this webhook. */
  eventGrid?: EventGridDelivery;
}

/**
 * How the access key the local replicator writes to S3 with starts (`s3az cleanup --local`
 * knows the replicator's multipart uploads by it, as their `Initiator`).
 */
export const REPLICATOR_ACCESS_KEY_PREFIX = 'LOCALREPLICATOR';
const ACCOUNT = 'devstoreaccount1';
const AZURITE_HOST = '127.0.0.1';
const OPTION_NAMES = new Set(['s3Port', 'azurePort', 'host', 'azuriteDataDir', 'log', 'eventGrid']);
const READY_TIMEOUT_MS = 30_000;
const require = createRequire(import.meta.url);

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A file of this folder, also when this module runs from the CLI bundle (dist/s3az.mjs, or one
 * of its chunks in dist/cli/): the package's src/local/ is then found above it.
 */
function localFile(name: string): URL {
  const beside = new URL(`./${name}`, import.meta.url);
  if (existsSync(beside)) return beside;
  for (let up = '../'; up.length <= 12; up += '../') {
    const candidate = new URL(`${up}src/local/${name}`, import.meta.url);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`src/local/${name} was not found beside the package`);
}

function nodeArgs(): string[] {
  // The benchmark's `--profile`: each emulator writes a V8 CPU profile there when it exits.
  const profiles = process.env.S3AZ_CPU_PROFILE_DIR;
  return [
    ...(profiles ? ['--cpu-prof', `--cpu-prof-dir=${profiles}`] : []),
    '--import',
    pathToFileURL(require.resolve('tsx')).href,
    '--import',
    localFile('exit-with-parent.ts').href,
  ];
}

/** The last line each child wrote on stderr, to explain a failed start. */
const lastError = new WeakMap<ChildProcess, string>();

function startChild(
  name: string,
  args: string[],
  env: Record<string, string>,
  log: ((line: string) => void) | undefined,
): ChildProcess {
  const child = spawn(process.execPath, [...nodeArgs(), ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    const text = chunk.toString().trimEnd();
    lastError.set(child, text.split('\n').at(-1) ?? text);
    log?.(`${name}: ${text}`);
  });
  return child;
}

/** Resolves with the `{"ready":true,"port":N}` line a child prints, or rejects on exit/timeout. */
function readyPort(name: string, child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(
      () => reject(new Error(`${name} did not start within ${READY_TIMEOUT_MS / 1000} s`)),
      READY_TIMEOUT_MS,
    );
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      const why = lastError.get(child);
      reject(
        new Error(`${name} exited with code ${code} before it was ready${why ? `: ${why}` : ''}`),
      );
    };
    child.once('exit', onExit);
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const line of buffered.split('\n')) {
        try {
          const message = JSON.parse(line) as { ready?: boolean; port?: number };
          if (message.ready && typeof message.port === 'number') {
            clearTimeout(timer);
            child.off('exit', onExit);
            resolve(message.port);
            return;
          }
        } catch {
          // not a ready line
        }
      }
    });
  });
}

async function waitForPort(
  name: string,
  host: string,
  port: number,
  child: ChildProcess,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited with code ${child.exitCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, host, () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${name} did not open port ${port} within ${READY_TIMEOUT_MS / 1000} s`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    // Azurite shuts down on SIGINT (Ctrl-C) but ignores SIGTERM; the project's own children take both.
    child.kill('SIGINT');
  });
}

/**
 * Starts the local stack as child processes: fauxqs with the S3 fidelity hooks (S3 + SQS),
 * Azurite (Blob, in memory unless a data folder is given) and the Azure shim in front of it.
 * Credentials are generated for this run; no well-known key is used.
 */
export async function startEmulators(
  options: StartEmulatorsOptions = {},
): Promise<RunningEmulators> {
  const unknown = Object.keys(options).filter((name) => !OPTION_NAMES.has(name));
  if (unknown.length > 0) {
    throw new TypeError(
      `startEmulators: unknown option ${unknown.map((name) => `"${name}"`).join(', ')}`,
    );
  }
  const host = options.host ?? '127.0.0.1';
  const region = 'us-east-1';
  const accessKeyId = `LOCAL${randomBytes(8).toString('hex').toUpperCase()}`;
  const replicatorAccessKeyId = `${REPLICATOR_ACCESS_KEY_PREFIX}${randomBytes(4).toString('hex').toUpperCase()}`;
  const secretAccessKey = randomBytes(24).toString('base64url');
  const azureAccountKey = randomBytes(64).toString('base64');
  const children: ChildProcess[] = [];
  const stop = async () => {
    // The shim holds keep-alive connections to Azurite, which waits for them before it exits:
    // stop the others first, then Azurite.
    const azurite = children.find((child) =>
      child.spawnargs.some((arg) => arg.includes('azurite')),
    );
    await Promise.all(children.filter((child) => child !== azurite).map(stopChild));
    if (azurite) await stopChild(azurite);
  };
  try {
    const s3 = startChild(
      's3',
      [fileURLToPath(localFile('s3-emulator-main.ts'))],
      {
        S3AZ_PORT: String(options.s3Port ?? 0),
        S3AZ_HOST: host,
        S3AZ_REGION: region,
        S3AZ_ACCESS_KEY_ID: `${accessKeyId},${replicatorAccessKeyId}`,
      },
      options.log,
    );
    children.push(s3);

    // Azurite is internal: only the shim in front of it is public.
    const azuritePort = await freePort(AZURITE_HOST);
    const azuriteArgs = [
      require.resolve('azurite/dist/src/blob/main.js'),
      '--blobHost',
      AZURITE_HOST,
      '--blobPort',
      String(azuritePort),
      '--skipApiVersionCheck',
      '--disableTelemetry',
      '--loose',
      '--silent',
      ...(options.azuriteDataDir
        ? ['--location', options.azuriteDataDir]
        : ['--inMemoryPersistence']),
    ];
    const azurite = startChild(
      'azurite',
      azuriteArgs,
      { AZURITE_ACCOUNTS: `${ACCOUNT}:${azureAccountKey}` },
      options.log,
    );
    children.push(azurite);

    const shim = startChild(
      'azure-shim',
      [fileURLToPath(localFile('azure-shim-main.ts'))],
      {
        S3AZ_TARGET: `http://${AZURITE_HOST}:${azuritePort}`,
        S3AZ_ACCOUNT: ACCOUNT,
        S3AZ_ACCOUNT_KEY: azureAccountKey,
        S3AZ_PORT: String(options.azurePort ?? 0),
        S3AZ_HOST: host,
        ...(options.eventGrid && { S3AZ_EVENT_GRID_URL: options.eventGrid.url }),
        ...(options.eventGrid?.secret !== undefined && {
          S3AZ_EVENT_GRID_SECRET: options.eventGrid.secret,
        }),
        ...(options.eventGrid?.containers && {
          S3AZ_EVENT_GRID_CONTAINERS: options.eventGrid.containers.join(','),
        }),
        ...(options.eventGrid?.skipClientRequestIdPrefix !== undefined && {
          S3AZ_EVENT_GRID_SKIP_CLIENT_REQUEST_ID_PREFIX:
            options.eventGrid.skipClientRequestIdPrefix,
        }),
        ...(options.eventGrid?.retryScale !== undefined && {
          S3AZ_EVENT_GRID_RETRY_SCALE: String(options.eventGrid.retryScale),
        }),
      },
      options.log,
    );
    children.push(shim);

    const [s3Port, shimPort] = await Promise.all([
      readyPort('the S3 emulator', s3),
      readyPort('the Azure shim', shim),
      waitForPort('Azurite', AZURITE_HOST, azuritePort, azurite),
    ]);
    const azureAccountUrl = `http://${host}:${shimPort}/${ACCOUNT}`;
    return {
      s3Endpoint: `http://${host}:${s3Port}`,
      region,
      accessKeyId,
      secretAccessKey,
      replicatorAccessKeyId,
      azureAccountName: ACCOUNT,
      azureAccountKey,
      azureAccountUrl,
      azuriteAccountUrl: `http://${AZURITE_HOST}:${azuritePort}/${ACCOUNT}`,
      azureConnectionString: `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT};AccountKey=${azureAccountKey};BlobEndpoint=${azureAccountUrl};`,
      eventGridPending: async () => {
        // A busy machine may refuse or reset a connection now and then: ask a few times.
        for (let attempt = 1; ; attempt++) {
          try {
            const response = await fetch(`http://${host}:${shimPort}${EVENT_GRID_STATUS_PATH}`);
            return ((await response.json()) as { pending: number }).pending;
          } catch (error) {
            if (attempt >= 5) {
              const cause = (error as Error & { cause?: Error }).cause?.message;
              throw new Error(
                `the Azure shim did not say what Event Grid deliveries it holds: ${(error as Error).message}${cause ? ` (${cause})` : ''}`,
              );
            }
            await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
          }
        }
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
