import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import type { RunningEmulators } from '../../src/local/emulators.ts';

/** What to tell a user who has no rclone. */
export const RCLONE_MISSING =
  'rclone not found: install it with "apt-get update && apt-get install -y rclone"';

/**
 * What the benchmark sets on rclone; everything else is rclone's default. Shown in the report
 * so that the comparison can be judged.
 */
export const RCLONE_SETTINGS = [
  's3 remote: provider=Other, force_path_style=true, upload_cutoff=8M (the default, 200M, sends smaller objects in one PUT, above the emulator 11 MiB body cap)',
  's3 defaults kept: chunk_size=5M, upload_concurrency=4',
  'azureblob remote: container SAS URL (rclone 1.60 builds https://<account>.<endpoint> from account/key/endpoint and knows only Azurite well-known key for use_emulator)',
  'azureblob defaults kept: chunk_size=4M, upload_concurrency=16',
];

/** rclone's version line (`rclone v1.60.1`), or `undefined` when it is not installed. */
export function rcloneVersion(): string | undefined {
  try {
    return execFileSync('rclone', ['version'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .split('\n')[0]
      ?.trim();
  } catch {
    return undefined;
  }
}

/** Where rclone's remotes point: the emulators' endpoints and credentials, and the container. */
export type RcloneTargets = Pick<
  RunningEmulators,
  | 's3Endpoint'
  | 'region'
  | 'accessKeyId'
  | 'secretAccessKey'
  | 'azureAccountName'
  | 'azureAccountKey'
  | 'azureAccountUrl'
> & { container: string };

/**
 * The environment for rclone with remotes `s3:` and `az:`, configured only through variables
 * and an empty config file in `tempDir`. Built from scratch, so nothing from this machine leaks
 * in: in particular `AWS_CA_BUNDLE`, which breaks rclone's S3 backend.
 */
export function rcloneEnvironment(targets: RcloneTargets, tempDir: string): NodeJS.ProcessEnv {
  const config = join(tempDir, 'rclone.conf');
  writeFileSync(config, '');
  const sas = generateBlobSASQueryParameters(
    {
      containerName: targets.container,
      permissions: ContainerSASPermissions.parse('racwdl'),
      expiresOn: new Date(Date.now() + 24 * 3600_000),
    },
    new StorageSharedKeyCredential(targets.azureAccountName, targets.azureAccountKey),
  ).toString();
  return {
    PATH: process.env.PATH,
    HOME: tempDir,
    RCLONE_CONFIG: config,
    RCLONE_CONFIG_S3_TYPE: 's3',
    RCLONE_CONFIG_S3_PROVIDER: 'Other',
    RCLONE_CONFIG_S3_ENDPOINT: targets.s3Endpoint,
    RCLONE_CONFIG_S3_REGION: targets.region,
    RCLONE_CONFIG_S3_ACCESS_KEY_ID: targets.accessKeyId,
    RCLONE_CONFIG_S3_SECRET_ACCESS_KEY: targets.secretAccessKey,
    RCLONE_CONFIG_S3_FORCE_PATH_STYLE: 'true',
    RCLONE_CONFIG_S3_UPLOAD_CUTOFF: '8M',
    RCLONE_CONFIG_AZ_TYPE: 'azureblob',
    RCLONE_CONFIG_AZ_SAS_URL: `${targets.azureAccountUrl}/${targets.container}?${sas}`,
  };
}
