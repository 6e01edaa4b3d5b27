import {
  AbortMultipartUploadCommand,
  type Initiator,
  ListMultipartUploadsCommand,
  type MultipartUpload,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { ContainerClient } from '@azure/storage-blob';
import type { ReplicationRule } from '../config/schema.ts';
import { azureErrorCode } from '../stores/azure-errors.ts';

/**
 * `s3az cleanup`: aborts the replicator's own abandoned S3 multipart uploads, and deletes the
 * Azure blobs that hold nothing but the replicator's own abandoned uncommitted blocks. Nothing
 * committed is ever changed, and nothing another writer started is ever touched.
 *
 * S3. ListMultipartUploads returns no user metadata (the replica marker given at
 * CreateMultipartUpload is not there; its `Upload` has Key, UploadId, Initiator, Owner,
 * StorageClass, Initiated and the checksum algorithm), and the upload id is S3's, not ours. So
 * an upload is the replicator's by its `Initiator`: the principal that started it. S3
 * documents its ID for an account (canonical id) and an IAM user (the user's ARN) only; for a
 * role session it is taken to be the session's ARN
 * (`arn:aws:sts::<account>:assumed-role/<role>/<session>`), as STS names the caller: the
 * functions' role (any session: Lambda names each one after the function), or this stack's
 * session of a rule's roleArn (`S3AZ_ROLE_SESSION_NAME`, the stack's name). Where S3 shows
 * them otherwise, `s3az cleanup --initiator` names them. Anything else, or an upload without
 * an Initiator, is another writer's and is left alone. Neither the key (users write under the
 * same prefixes) nor the age nor the checksum algorithm tells a replica's upload from a
 * user's; they only narrow it (prefix of the rule, older than the threshold).
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListMultipartUploads.html
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_Initiator.html
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_AbortMultipartUpload.html
 *
 * Azure. There is no abort: uncommitted blocks are discarded by Azure a week after the last
 * successful Put Block to the blob if no Put Block List commits them. Put Block List of
 * the committed list would discard them now, but it rewrites a committed blob (new ETag, date
 * and event) and discards every writer's uncommitted blocks alike, so it is never used. What
 * can be done without touching committed data: a blob that has no committed content yet (Put
 * Block on a new name creates one, of length 0, listed only with `include=uncommittedblobs`)
 * whose every uncommitted block is named in the replicator's scheme (`blockIdFor`: base64 of
 * `<16-character staging id>-<6-digit part>`) is deleted, `If-None-Match: *`, so that a blob
 * committed since the listing is kept.
 * Uncommitted blocks staged on a blob that has committed content are left for Azure's expiry.
 * https://learn.microsoft.com/rest/api/storageservices/put-block
 * https://learn.microsoft.com/rest/api/storageservices/put-block-list
 * https://learn.microsoft.com/rest/api/storageservices/list-blobs
 * https://learn.microsoft.com/rest/api/storageservices/get-block-list
 * https://learn.microsoft.com/rest/api/storageservices/delete-blob
 */

/** Whether an upload's `Initiator` is one of the replicator's principals. */
export type OwnInitiator = (initiator: Initiator | undefined) => boolean;

/** An S3 role session's ARN: `arn:<partition>:sts::<account>:assumed-role/<role>/<session>`. */
const ROLE_SESSION_ARN = /^arn:aws[a-z-]*:sts::\d{12}:assumed-role\/([^/]+)\/(.+)$/;

/**
 * The replicator's uploads on AWS: started by any session of the functions' role (when its
 * name is known), or by `sessionName` in any role (a rule's roleArn, assumed with the stack's
 * session name).
 */
export function stackInitiators(options: {
  functionsRoleName?: string;
  sessionName: string;
}): OwnInitiator {
  return (initiator) => {
    const match = ROLE_SESSION_ARN.exec(initiator?.ID ?? '');
    if (!match) return false;
    return (
      (options.functionsRoleName !== undefined && match[1] === options.functionsRoleName) ||
      match[2] === options.sessionName
    );
  };
}

/**
 * The replicator's uploads in the local S3 emulator: started with an access key that begins
 * with `accessKeyPrefix`, which the emulator shows as an IAM user of that name.
 */
export function localInitiators(accessKeyPrefix: string): OwnInitiator {
  return (initiator) => {
    const user = /^arn:aws[a-z-]*:iam::\d{12}:user\/(.+)$/.exec(initiator?.ID ?? '')?.[1];
    return user?.startsWith(accessKeyPrefix) === true;
  };
}

/**
 * Initiators named by the operator (`--initiator`): an entry ending in `/` or `:` matches
 * every Initiator ID it starts (`arn:aws:sts::111122223333:assumed-role/my-role/`), any
 * other entry matches itself. With `also`, what it recognises is recognised too.
 */
export function namedInitiators(entries: readonly string[], also?: OwnInitiator): OwnInitiator {
  return (initiator) => {
    const id = initiator?.ID;
    if (
      id !== undefined &&
      entries.some((entry) =>
        entry.endsWith('/') || entry.endsWith(':') ? id.startsWith(entry) : id === entry,
      )
    ) {
      return true;
    }
    return also?.(initiator) === true;
  };
}

/** Block ids `blockIdFor` makes: base64 of `<16 letters or digits>-<6 digits>`. */
const OWN_BLOCK_ID_TEXT = /^[A-Za-z0-9]{16}-\d{6}$/;

/** Whether an uncommitted block's id is one the replicator names its blocks with. */
export function isReplicatorBlockId(blockId: string): boolean {
  const text = Buffer.from(blockId, 'base64');
  return OWN_BLOCK_ID_TEXT.test(text.toString('latin1')) && text.toString('base64') === blockId;
}

export interface CleanupClients {
  s3: S3Client;
  /** The rule's container; requests through it should carry the replicator's request id. */
  container: ContainerClient;
}

export interface CleanupOptions {
  /** Only what is older than this is cleaned up. */
  olderThanMs: number;
  dryRun?: boolean;
  /** Only this rule (default: every rule). */
  rule?: string;
  now?: () => number;
}

export type CleanupAction = 'aborted' | 'deleted' | 'would abort' | 'would delete' | 'failed';

/** One abandoned upload or blob of the replicator's, and what was done with it. */
export interface CleanupItem {
  rule: string;
  side: 's3' | 'azure';
  /** Bucket or container. */
  container: string;
  key: string;
  /** S3: the upload id. */
  uploadId?: string;
  /** Azure: how many uncommitted blocks (all the replicator's) it held. */
  blocks?: number;
  /** S3: when the upload started; Azure: the uncommitted blob's Last-Modified. */
  since: string;
  action: CleanupAction;
  error?: string;
}

/** Per rule and side: what was seen and left alone, and why. */
export interface CleanupCounts {
  rule: string;
  side: 's3' | 'azure';
  container: string;
  /** Uploads or uncommitted blobs seen under the rule's prefix. */
  seen: number;
  /** Not the replicator's (another initiator, or another writer's blocks among them). */
  otherWriters: number;
  /** The replicator's, but not older than the threshold. */
  recent: number;
  /** Cleaned up (or, in a dry run, would be). */
  cleaned: number;
  failed: number;
}

export interface CleanupResult {
  dryRun: boolean;
  olderThanMs: number;
  items: CleanupItem[];
  counts: CleanupCounts[];
}

function message(error: unknown): string {
  return ((error as Error).message ?? String(error)).split('\n')[0] ?? '';
}

/** Whether the replicator writes to `side` for this rule (only then can it leave staging). */
function writesTo(rule: ReplicationRule, side: 's3' | 'azure'): boolean {
  return side === 's3' ? rule.direction !== 's3-to-azure' : rule.direction !== 'azure-to-s3';
}

async function* multipartUploads(
  s3: S3Client,
  bucket: string,
  prefix: string,
): AsyncGenerator<MultipartUpload> {
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  for (;;) {
    const out = await s3.send(
      new ListMultipartUploadsCommand({
        Bucket: bucket,
        ...(prefix !== '' && { Prefix: prefix }),
        ...(keyMarker !== undefined && { KeyMarker: keyMarker }),
        ...(uploadIdMarker !== undefined && { UploadIdMarker: uploadIdMarker }),
      }),
    );
    for (const upload of out.Uploads ?? []) yield upload;
    if (
      !out.IsTruncated ||
      (out.NextKeyMarker === undefined && out.NextUploadIdMarker === undefined)
    )
      return;
    keyMarker = out.NextKeyMarker;
    uploadIdMarker = out.NextUploadIdMarker;
  }
}

async function cleanS3(
  rule: ReplicationRule,
  s3: S3Client,
  isOwn: OwnInitiator,
  options: Required<Omit<CleanupOptions, 'rule'>>,
  seenUploads: Set<string>,
  items: CleanupItem[],
): Promise<CleanupCounts> {
  const bucket = rule.s3.bucket;
  const counts: CleanupCounts = {
    rule: rule.name,
    side: 's3',
    container: bucket,
    seen: 0,
    otherWriters: 0,
    recent: 0,
    cleaned: 0,
    failed: 0,
  };
  const cutoff = options.now() - options.olderThanMs;
  for await (const upload of multipartUploads(s3, bucket, rule.s3.prefix)) {
    const { Key: key, UploadId: uploadId } = upload;
    if (key === undefined || uploadId === undefined) continue;
    // Two rules on one bucket may both list an upload: it is counted, and handled, once.
    if (seenUploads.has(`${bucket}\n${uploadId}`)) continue;
    seenUploads.add(`${bucket}\n${uploadId}`);
    counts.seen++;
    if (!isOwn(upload.Initiator)) {
      counts.otherWriters++;
      continue;
    }
    // An upload without a date cannot be shown to be old: it is left alone.
    const initiated = upload.Initiated?.getTime();
    if (initiated === undefined || initiated > cutoff) {
      counts.recent++;
      continue;
    }
    const item: CleanupItem = {
      rule: rule.name,
      side: 's3',
      container: bucket,
      key,
      uploadId,
      since: new Date(initiated).toISOString(),
      action: options.dryRun ? 'would abort' : 'aborted',
    };
    if (!options.dryRun) {
      try {
        // Frees the parts' storage; an upload already completed or aborted is 404 NoSuchUpload.
        await s3.send(
          new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
        );
      } catch (error) {
        if ((error as { name?: string }).name !== 'NoSuchUpload') {
          item.action = 'failed';
          item.error = message(error);
        }
      }
    }
    if (item.action === 'failed') counts.failed++;
    else counts.cleaned++;
    items.push(item);
  }
  return counts;
}

async function cleanAzure(
  rule: ReplicationRule,
  container: ContainerClient,
  options: Required<Omit<CleanupOptions, 'rule'>>,
  items: CleanupItem[],
): Promise<CleanupCounts> {
  const counts: CleanupCounts = {
    rule: rule.name,
    side: 'azure',
    container: container.containerName,
    seen: 0,
    otherWriters: 0,
    recent: 0,
    cleaned: 0,
    failed: 0,
  };
  const cutoff = options.now() - options.olderThanMs;
  const listing = container.listBlobsFlat({
    ...(rule.azure.prefix !== '' && { prefix: rule.azure.prefix }),
    includeUncommitedBlobs: true,
  });
  for await (const blob of listing) {
    // A blob with nothing committed has length 0 (Put Block docs); longer ones are committed.
    if ((blob.properties.contentLength ?? 0) !== 0) continue;
    const client = container.getBlockBlobClient(blob.name);
    let committed: number;
    let uncommitted: string[];
    try {
      const list = await client.getBlockList('all');
      committed = list.committedBlocks?.length ?? 0;
      uncommitted = (list.uncommittedBlocks ?? []).map((block) => block.name);
    } catch (error) {
      if (azureErrorCode(error) === 'BlobNotFound') continue;
      throw error;
    }
    if (committed > 0 || uncommitted.length === 0) continue;
    // A committed empty blob (Put Blob of 0 bytes) has no committed blocks either, and can
    // have uncommitted blocks staged on it: Get Blob Properties finds it, and not a blob that
    // is nothing but uncommitted blocks.
    if (await client.exists()) continue;
    counts.seen++;
    if (!uncommitted.every(isReplicatorBlockId)) {
      counts.otherWriters++;
      continue;
    }
    // Its age is its Last-Modified: when its first block was staged (Put Block does not
    // change a blob's Last-Modified; Azure's own expiry counts from the last Put Block
    // instead). A copy that stages to it for longer than the threshold loses its blocks and
    // stages them again on its next attempt (it stages what it does not find), so the
    // threshold (24 h by default) is to be far longer than a copy task's retries last.
    const since = blob.properties.lastModified.getTime();
    if (since > cutoff) {
      counts.recent++;
      continue;
    }
    const item: CleanupItem = {
      rule: rule.name,
      side: 'azure',
      container: container.containerName,
      key: blob.name,
      blocks: uncommitted.length,
      since: new Date(since).toISOString(),
      action: options.dryRun ? 'would delete' : 'deleted',
    };
    if (!options.dryRun) {
      try {
        // `If-None-Match: *`: only while there is still no committed blob. For conditions a
        // blob of uncommitted blocks only does not exist (If-Match its listed ETag fails with
        // 412, on Azurite as on Azure), and a blob committed since (Put Block List) does, so
        // it is kept.
        // https://learn.microsoft.com/rest/api/storageservices/specifying-conditional-headers-for-blob-service-operations
        await client.delete({ conditions: { ifNoneMatch: '*' } });
      } catch (error) {
        const code = azureErrorCode(error);
        if (code !== 'BlobNotFound') {
          item.action = 'failed';
          item.error =
            code === 'ConditionNotMet'
              ? 'the blob was committed since it was listed: kept'
              : message(error);
        }
      }
    }
    if (item.action === 'failed') counts.failed++;
    else counts.cleaned++;
    items.push(item);
  }
  return counts;
}

/**
 * Cleans up, for each rule (or `options.rule`), the replicator's abandoned staged writes on
 * the sides it writes to, older than `options.olderThanMs`. A dry run lists them and changes
 * nothing.
 */
export async function cleanup(
  rules: readonly ReplicationRule[],
  deps: {
    clientsOf(rule: ReplicationRule): Promise<CleanupClients> | CleanupClients;
    isOwnInitiator: OwnInitiator;
  },
  options: CleanupOptions,
): Promise<CleanupResult> {
  const chosen =
    options.rule === undefined ? rules : rules.filter((rule) => rule.name === options.rule);
  const settings = {
    olderThanMs: options.olderThanMs,
    dryRun: options.dryRun === true,
    now: options.now ?? Date.now,
  };
  const items: CleanupItem[] = [];
  const counts: CleanupCounts[] = [];
  const seenUploads = new Set<string>();
  const seenContainers = new Set<string>();
  for (const rule of chosen) {
    const clients = await deps.clientsOf(rule);
    if (writesTo(rule, 's3')) {
      counts.push(
        await cleanS3(rule, clients.s3, deps.isOwnInitiator, settings, seenUploads, items),
      );
    }
    if (writesTo(rule, 'azure')) {
      // Two rules on one container and prefix would list the same blobs twice.
      const where = `${rule.azure.accountUrl}\n${rule.azure.container}\n${rule.azure.prefix}`;
      if (seenContainers.has(where)) continue;
      seenContainers.add(where);
      counts.push(await cleanAzure(rule, clients.container, settings, items));
    }
  }
  return { dryRun: settings.dryRun, olderThanMs: options.olderThanMs, items, counts };
}
