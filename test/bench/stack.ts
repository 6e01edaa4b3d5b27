import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { type RunningEmulators, startEmulators } from '../../src/local/emulators.ts';
import { findChildren, type MeteredProcess } from './cpu.ts';
import type { Cleanup } from './lifecycle.ts';
import { BenchStores, type StoreEnvironment } from './stores.ts';

/** The emulators, a bucket and a container named `container`, and access to both. */
export interface BenchStack {
  emulators: RunningEmulators;
  env: StoreEnvironment;
  stores: BenchStores;
  /** The emulator processes, for CPU metering. */
  processes: MeteredProcess[];
}

/** How the emulator processes are recognised among this process's children. */
/** How each emulator process is found among the children of whoever started it. */
export const EMULATOR_PROCESSES = {
  's3 emulator': 's3-emulator-main',
  'azure shim': 'azure-shim-main',
  azurite: 'azurite',
} as const;

/**
 * Starts the local emulators (stopped by `cleanup`), and creates the bucket and the container.
 */
export async function startBenchStack(cleanup: Cleanup, container: string): Promise<BenchStack> {
  const emulators = await startEmulators();
  cleanup.add(() => emulators.stop());
  const env: StoreEnvironment = {
    AWS_ENDPOINT_URL_S3: emulators.s3Endpoint,
    AWS_REGION: emulators.region,
    AWS_ACCESS_KEY_ID: emulators.accessKeyId,
    AWS_SECRET_ACCESS_KEY: emulators.secretAccessKey,
    AZURE_STORAGE_CONNECTION_STRING: emulators.azureConnectionString,
  };
  const stores = new BenchStores(env, container);
  await stores.s3.send(new CreateBucketCommand({ Bucket: container }));
  await stores.azure.create();
  return {
    emulators,
    env,
    stores,
    processes: findChildren(process.pid, EMULATOR_PROCESSES),
  };
}
