import { UsageError } from '../errors.ts';
import { isEmulatorHost } from '../stores/clients.ts';

/** A parsed object location. `key` may be empty or end in `/` (a prefix). */
export type Location =
  | { side: 's3'; bucket: string; key: string }
  | { side: 'azure'; accountUrl?: string; container: string; key: string };

/**
 * Parses `s3://bucket/key`, `az://container/key` (account from the environment), or
 * `https://<account>.blob.core.windows.net/<container>/<key>` (also an emulator's
 * `http://127.0.0.1:10000/<account>/<container>/<key>`). Keys in s3:// and az:// URIs are
 * taken literally; keys in http(s) URLs are percent-decoded.
 */
export function parseLocation(text: string): Location {
  const s3 = /^s3:\/\/([^/]+)(?:\/(.*))?$/s.exec(text);
  if (s3) return { side: 's3', bucket: checkBucket(s3[1] ?? '', text), key: s3[2] ?? '' };
  const az = /^az:\/\/([^/]+)(?:\/(.*))?$/s.exec(text);
  if (az) return { side: 'azure', container: checkContainer(az[1] ?? '', text), key: az[2] ?? '' };
  if (/^https?:\/\//i.test(text)) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new UsageError(`not a valid URL: ${text}`);
    }
    const segments = url.pathname.split('/').slice(1);
    const emulator = isEmulatorHost(url.hostname);
    const accountSegments = emulator ? 1 : 0;
    const account = emulator ? segments[0] : url.hostname.split('.')[0];
    if (!emulator && !/\.blob\./i.test(url.hostname)) {
      throw new UsageError(
        `${text}: not an Azure Blob URL (expected https://<account>.blob.core.windows.net/<container>/<key>)`,
      );
    }
    const container = segments[accountSegments];
    if (!account || !container) {
      throw new UsageError(`${text}: the URL names no container`);
    }
    let key: string;
    try {
      key = decodeURIComponent(segments.slice(accountSegments + 1).join('/'));
    } catch {
      throw new UsageError(`${text}: the key is not valid percent-encoding`);
    }
    const accountUrl = `${url.protocol}//${url.host}${emulator ? `/${account}` : ''}`;
    return { side: 'azure', accountUrl, container: checkContainer(container, text), key };
  }
  throw new UsageError(
    `${text}: not a location (use s3://bucket/key, az://container/key or https://<account>.blob.core.windows.net/<container>/<key>)`,
  );
}

function checkBucket(name: string, text: string): string {
  // S3 bucket names: 3-63 chars of lowercase letters, digits, dots and hyphens.
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name)) {
    throw new UsageError(`${text}: "${name}" is not a valid S3 bucket name`);
  }
  return name;
}

function checkContainer(name: string, text: string): string {
  // Azure container names: 3-63 chars of lowercase letters, digits and single hyphens.
  if (!/^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/.test(name) && name !== '$root') {
    throw new UsageError(`${text}: "${name}" is not a valid Azure container name`);
  }
  return name;
}

/** Renders a location back as a URI for messages. */
export function formatLocation(location: Location, key = location.key): string {
  return location.side === 's3'
    ? `s3://${location.bucket}/${key}`
    : `az://${location.container}/${key}`;
}
