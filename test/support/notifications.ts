import { randomUUID } from 'node:crypto';

let counter = 0;

/** An S3 sequencer later than every one made before it in this process (hex, as S3 writes). */
export function nextS3Sequencer(): string {
  counter += 1;
  return (BigInt(Date.now()) * 1000n + BigInt(counter))
    .toString(16)
    .toUpperCase()
    .padStart(18, '0');
}

/** An Azure sequencer later than every one made before it in this process. */
export function nextAzureSequencer(): string {
  counter += 1;
  return (BigInt(Date.now()) * 1000n + BigInt(counter)).toString(16).padStart(32, '0');
}

/** How S3 writes keys into notifications: form encoding, spaces as `+`. */
export const s3Encode = (key: string) => encodeURIComponent(key).replace(/%20/g, '+');

/** One record of an S3 event notification, as S3 sends it to SQS. */
export function s3Record(
  eventName: 'ObjectCreated:Put' | 'ObjectCreated:CompleteMultipartUpload' | 'ObjectRemoved:Delete',
  bucket: string,
  key: string,
  object: { etag?: string; size?: number; sequencer: string },
  /** The writer's principal; `null` for a record without one. Default: a user. */
  principalId: string | null = 'AWS:AIDAEXAMPLE',
) {
  return {
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: 'us-east-1',
    eventTime: new Date().toISOString(),
    eventName,
    ...(principalId !== null && { userIdentity: { principalId } }),
    requestParameters: { sourceIPAddress: '127.0.0.1' },
    responseElements: { 'x-amz-request-id': randomUUID(), 'x-amz-id-2': 'local' },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: 's3az-events',
      bucket: {
        name: bucket,
        ownerIdentity: { principalId: 'A3EXAMPLE' },
        arn: `arn:aws:s3:::${bucket}`,
      },
      object: {
        key: s3Encode(key),
        ...(object.size !== undefined && { size: object.size }),
        ...(object.etag !== undefined && { eTag: object.etag.replace(/"/g, '') }),
        sequencer: object.sequencer,
      },
    },
  };
}

/** An S3 notification message body with the given records. */
export function s3Notification(...records: ReturnType<typeof s3Record>[]): string {
  return JSON.stringify({ Records: records });
}

/** One Event Grid event (Event Grid schema) for a blob of an emulator account. */
export function blobEvent(
  eventType: 'Microsoft.Storage.BlobCreated' | 'Microsoft.Storage.BlobDeleted',
  accountUrl: string,
  container: string,
  key: string,
  blob: {
    etag?: string;
    size?: number;
    sequencer: string;
    api?: string;
    /** The writer's x-ms-client-request-id; `null` for an event without one (BlobDeleted). */
    clientRequestId?: string | null;
  },
) {
  const account = new URL(accountUrl).pathname.split('/').filter(Boolean)[0] ?? 'devstoreaccount1';
  const encoded = key.split('/').map(encodeURIComponent).join('/');
  return {
    topic: `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/${account}`,
    subject: `/blobServices/default/containers/${container}/blobs/${key}`,
    eventType,
    id: randomUUID(),
    eventTime: new Date().toISOString(),
    dataVersion: '',
    metadataVersion: '1',
    data: {
      api: blob.api ?? (eventType === 'Microsoft.Storage.BlobCreated' ? 'PutBlob' : 'DeleteBlob'),
      ...(blob.clientRequestId !== null && {
        clientRequestId: blob.clientRequestId ?? randomUUID(),
      }),
      requestId: randomUUID(),
      ...(blob.etag !== undefined && { eTag: blob.etag.replace(/"/g, '') }),
      contentType: 'application/octet-stream',
      ...(blob.size !== undefined && { contentLength: blob.size }),
      blobType: 'BlockBlob',
      url: `${accountUrl.replace(/\/+$/, '')}/${container}/${encoded}`,
      sequencer: blob.sequencer,
      storageDiagnostics: { batchId: randomUUID() },
    },
  };
}
