import type { FauxqsObject, FauxqsS3Store } from './s3-versioning.ts';

interface ListOptions {
  prefix?: string;
  delimiter?: string;
  maxKeys?: number;
  startAfter?: string;
  marker?: string;
}

/** Compares two keys as S3 orders them: by their UTF-8 bytes. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Makes the store list keys as S3 lists a general purpose bucket: in UTF-8 binary order, a page
 * after `startAfter` (or the continuation token's key) in that same order. fauxqs sorts with
 * `localeCompare` (case and punctuation folded) but pages with a code-unit comparison, so a
 * listing of mixed-case or punctuated keys could skip or repeat keys from page to page.
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
 */
export function listInS3Order(store: FauxqsS3Store): void {
  const target = store as FauxqsS3Store & {
    listObjects(bucket: string, options?: ListOptions): unknown;
  };
  const original = target.listObjects.bind(target);
  target.listObjects = (bucket: string, options: ListOptions = {}) => {
    const objects = store.buckets.get(bucket);
    // A missing bucket: fauxqs's own error.
    if (!objects) return original(bucket, options);
    const prefix = options.prefix ?? '';
    const delimiter = options.delimiter;
    const maxKeys = options.maxKeys ?? 1000;
    const after = options.startAfter ?? options.marker ?? '';
    const sorted = [...objects.values()]
      .filter((object) => object.key.startsWith(prefix))
      .sort((a, b) => compareKeys(a.key, b.key));
    const result: FauxqsObject[] = [];
    const commonPrefixes: string[] = [];
    let isTruncated = false;
    for (const object of sorted) {
      if (after !== '' && compareKeys(object.key, after) <= 0) continue;
      const rest = object.key.slice(prefix.length);
      const at = delimiter ? rest.indexOf(delimiter) : -1;
      if (delimiter && at >= 0) {
        const common = prefix + rest.slice(0, at + delimiter.length);
        if (after !== '' && compareKeys(common, after) <= 0) continue;
        if (commonPrefixes.includes(common)) continue;
        if (result.length + commonPrefixes.length >= maxKeys) {
          isTruncated = true;
          break;
        }
        commonPrefixes.push(common);
        continue;
      }
      if (result.length + commonPrefixes.length >= maxKeys) {
        isTruncated = true;
        break;
      }
      result.push(object);
    }
    return { objects: result, commonPrefixes, isTruncated };
  };
}
