import { randomBytes } from 'node:crypto';
import { escapeXml } from './s3-notifications.ts';

/** An object as fauxqs 1.9 keeps it (its `S3Object`); fauxqs serves these fields as they are. */
export interface FauxqsObject {
  key: string;
  body: Buffer;
  contentType: string;
  contentLength: number;
  etag: string;
  lastModified: Date;
  metadata: Record<string, string>;
}

/** The part of fauxqs 1.9's `S3Store` this layer reads and writes: each bucket's current objects. */
export interface FauxqsS3Store {
  buckets: Map<string, Map<string, FauxqsObject>>;
}

/**
 * A new fauxqs S3 store, to hand to `buildApp({ stores })` and keep: fauxqs exports no S3Store
 * and no way to reach the one it builds, but the emulator must set an object's date and put an
 * older version back as it was (eTag, date, type, metadata), which no S3 request can do.
 */
export async function createFauxqsS3Store(): Promise<FauxqsS3Store> {
  const url = new URL('./s3/s3Store.js', import.meta.resolve('fauxqs'));
  const module = (await import(url.href)) as { S3Store?: new () => FauxqsS3Store };
  if (typeof module.S3Store !== 'function') {
    throw new Error(
      `fauxqs has no S3Store at ${url.href}; this emulator is written for fauxqs 1.9`,
    );
  }
  const store = new module.S3Store();
  if (!(store.buckets instanceof Map)) {
    throw new Error('fauxqs S3Store keeps no buckets map; this emulator is written for fauxqs 1.9');
  }
  return store;
}

export type VersioningStatus = 'Enabled' | 'Suspended';

/** One stored version: the object as fauxqs served it, and the headers this layer keeps beside it. */
export interface ObjectVersion {
  versionId: string;
  deleteMarker: false;
  object: FauxqsObject;
  headers: Record<string, string>;
}

export interface DeleteMarker {
  versionId: string;
  deleteMarker: true;
  lastModified: Date;
}

export type VersionEntry = ObjectVersion | DeleteMarker;

/** What a `DELETE ?versionId=` did. */
export interface VersionDeletion {
  /** The removed version was a delete marker. */
  deleteMarker: boolean;
  /** The removed version was the current one, so `current` now is. */
  wasCurrent: boolean;
  current?: VersionEntry;
}

/** S3's version ids are 32 URL-safe characters. */
const newVersionId = () => randomBytes(24).toString('base64url');

/**
 * S3 versioning over fauxqs, which keeps one object per key: fauxqs keeps the current object,
 * this keeps every version of a key of a bucket that has a versioning status (newest first,
 * the current one included) and, when the current version is removed, puts the newest one left
 * back into fauxqs as it was. A key's history starts at its first change after versioning was
 * set; an object stored before then is its `null` version.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/Versioning.html
 */
export class S3Versions {
  readonly #status = new Map<string, VersioningStatus>();
  readonly #histories = new Map<string, Map<string, VersionEntry[]>>();

  constructor(readonly store: FauxqsS3Store) {}

  status(bucket: string): VersioningStatus | undefined {
    return this.#status.get(bucket);
  }

  setStatus(bucket: string, status: VersioningStatus): void {
    this.#status.set(bucket, status);
  }

  /** Forgets a bucket that was deleted. */
  dropBucket(bucket: string): void {
    this.#status.delete(bucket);
    this.#histories.delete(bucket);
  }

  /** Whether the bucket keeps any version or delete marker (then it cannot be deleted). */
  hasVersions(bucket: string): boolean {
    return [...(this.#histories.get(bucket)?.values() ?? [])].some((list) => list.length > 0);
  }

  currentObject(bucket: string, key: string): FauxqsObject | undefined {
    return this.store.buckets.get(bucket)?.get(key);
  }

  /**
   * Starts a key's history from what fauxqs holds, when it has none: the object stored before
   * versioning was set becomes the `null` version (with `headers`, the ones kept beside it).
   */
  seed(bucket: string, key: string, headersOf: (object: FauxqsObject) => Record<string, string>) {
    const keys = this.#keysOf(bucket);
    if (keys.has(key)) return;
    const object = this.currentObject(bucket, key);
    keys.set(
      key,
      object
        ? [{ versionId: 'null', deleteMarker: false, object, headers: headersOf(object) }]
        : [],
    );
  }

  /** The histories of a bucket's keys, made on first use. */
  #keysOf(bucket: string): Map<string, VersionEntry[]> {
    let keys = this.#histories.get(bucket);
    if (!keys) {
      keys = new Map();
      this.#histories.set(bucket, keys);
    }
    return keys;
  }

  /** The key's versions, newest first; undefined when it has no history. */
  history(bucket: string, key: string): readonly VersionEntry[] | undefined {
    return this.#histories.get(bucket)?.get(key);
  }

  current(bucket: string, key: string): VersionEntry | undefined {
    return this.history(bucket, key)?.[0];
  }

  find(bucket: string, key: string, versionId: string): VersionEntry | undefined {
    return this.history(bucket, key)?.find((entry) => entry.versionId === versionId);
  }

  /**
   * Puts a new current version on top of the key's history and returns its id. A suspended
   * bucket writes the `null` version, replacing the one there was.
   * https://docs.aws.amazon.com/AmazonS3/latest/userguide/AddingObjectstoVersionSuspendedBuckets.html
   */
  #push(
    bucket: string,
    key: string,
    entry: Omit<ObjectVersion, 'versionId'> | Omit<DeleteMarker, 'versionId'>,
  ) {
    const status = this.status(bucket);
    const keys = this.#keysOf(bucket);
    const versionId = status === 'Suspended' ? 'null' : newVersionId();
    const list = (keys.get(key) ?? []).filter((old) => old.versionId !== versionId);
    list.unshift({ ...entry, versionId } as VersionEntry);
    keys.set(key, list);
    return versionId;
  }

  /** Records the object fauxqs just stored as the key's new current version. */
  recordWrite(bucket: string, key: string, object: FauxqsObject, headers: Record<string, string>) {
    return this.#push(bucket, key, { deleteMarker: false, object, headers });
  }

  /** Records a delete marker as the key's current version (fauxqs has just removed the object). */
  recordDeleteMarker(bucket: string, key: string): string {
    return this.#push(bucket, key, { deleteMarker: true, lastModified: new Date() });
  }

  /**
   * Removes one version for good. When it was the current one, the newest one left becomes
   * current: its object goes back into fauxqs as it was stored, or fauxqs holds none when that
   * is a delete marker or nothing is left.
   * https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeletingObjectVersions.html
   */
  deleteVersion(bucket: string, key: string, versionId: string): VersionDeletion {
    const list = this.#histories.get(bucket)?.get(key);
    const index = list?.findIndex((entry) => entry.versionId === versionId) ?? -1;
    const removed = index >= 0 ? list?.splice(index, 1)[0] : undefined;
    if (!list || !removed) return { deleteMarker: false, wasCurrent: false };
    const current = list[0];
    if (index === 0) {
      const objects = this.store.buckets.get(bucket);
      if (current && !current.deleteMarker) objects?.set(key, current.object);
      else objects?.delete(key);
    }
    if (list.length === 0) this.#histories.get(bucket)?.delete(key);
    return {
      deleteMarker: removed.deleteMarker,
      wasCurrent: index === 0,
      ...(current && { current }),
    };
  }

  /**
   * ListObjectVersions: every version and delete marker of the keys under `prefix`, keys in
   * order and each key's newest first, in one page.
   * https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html
   */
  listXml(bucket: string, prefix: string): string {
    const histories = this.#histories.get(bucket);
    const keys = new Set([
      ...(this.store.buckets.get(bucket)?.keys() ?? []),
      ...(histories?.keys() ?? []),
    ]);
    const owner = '<Owner><ID>LOCAL</ID><DisplayName>local</DisplayName></Owner>';
    const entries = [...keys]
      .filter((key) => key.startsWith(prefix))
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .flatMap((key) => {
        const object = this.currentObject(bucket, key);
        const list: readonly VersionEntry[] =
          histories?.get(key) ??
          (object ? [{ versionId: 'null', deleteMarker: false, object, headers: {} }] : []);
        return list.map((entry, index) => {
          const common = `<Key>${escapeXml(key)}</Key><VersionId>${escapeXml(entry.versionId)}</VersionId><IsLatest>${index === 0}</IsLatest>`;
          return entry.deleteMarker
            ? `<DeleteMarker>${common}<LastModified>${entry.lastModified.toISOString()}</LastModified>${owner}</DeleteMarker>`
            : `<Version>${common}<LastModified>${entry.object.lastModified.toISOString()}</LastModified><ETag>${escapeXml(entry.object.etag)}</ETag><Size>${entry.object.contentLength}</Size><StorageClass>STANDARD</StorageClass>${owner}</Version>`;
        });
      })
      .join('');
    return `<?xml version="1.0" encoding="UTF-8"?>\n<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${escapeXml(bucket)}</Name><Prefix>${escapeXml(prefix)}</Prefix><KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>${entries}</ListVersionsResult>`;
  }

  /** GetBucketVersioning's answer: no Status for a bucket whose versioning was never set. */
  configurationXml(bucket: string): string {
    const status = this.status(bucket);
    return `<?xml version="1.0" encoding="UTF-8"?>\n<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${status ? `<Status>${status}</Status>` : ''}</VersioningConfiguration>`;
  }
}
