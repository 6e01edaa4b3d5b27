import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/**
 * S3 event notifications for the S3 emulator, which does not send them: a bucket's
 * notification configuration (PutBucketNotificationConfiguration, queue targets with event
 * and prefix/suffix filters) is kept, and after every successful PutObject, CopyObject,
 * CompleteMultipartUpload, DeleteObject and DeleteObjects the notification S3 would send
 * (same JSON, URL-encoded key, size, eTag, version id, per-key sequencer, the requester's
 * access key as principal) goes to the queue.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html
 */

interface QueueTarget {
  id: string;
  queueArn: string;
  events: string[];
  prefix: string;
  suffix: string;
  /** The filter rules as given (S3 answers a configuration with the rules it was given). */
  filterRules: Array<{ name: string; value: string }>;
}

/** A bucket's notification configuration: queue targets, and the rest kept as it was sent. */
interface BucketNotifications {
  queues: QueueTarget[];
  /** Topic, Lambda (CloudFunction) and EventBridge configurations, as XML. */
  others: string[];
}

export interface S3NotificationOptions {
  region: string;
}

const tag = (xml: string, name: string) =>
  [...xml.matchAll(new RegExp(`<${name}>([\\s\\S]*?)</${name}>`, 'g'))].map((match) =>
    unescapeXml(match[1] ?? ''),
  );

function unescapeXml(text: string): string {
  return text
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&quot;', '"')
    .replaceAll('&apos;', "'")
    .replaceAll('&amp;', '&');
}

/** Escapes text for an XML element or attribute. */
export const escapeXml = (text: string) =>
  text.replace(
    /[<>&"']/g,
    (char) =>
      ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[char] ?? char,
  );

function filterOf(block: string) {
  const filterRules = tag(block, 'FilterRule').map((rule) => ({
    name: tag(rule, 'Name')[0] ?? '',
    value: tag(rule, 'Value')[0] ?? '',
  }));
  const value = (name: string) =>
    filterRules.find((rule) => rule.name.toLowerCase() === name)?.value ?? '';
  return {
    filterRules,
    prefix: value('prefix'),
    suffix: value('suffix'),
    events: tag(block, 'Event'),
  };
}

function parseConfiguration(xml: string): BucketNotifications {
  const queues = tag(xml, 'QueueConfiguration').map((block) => ({
    id: tag(block, 'Id')[0] ?? randomUUID(),
    queueArn: tag(block, 'Queue')[0] ?? '',
    ...filterOf(block),
  }));
  const others = [
    ...xml.matchAll(
      /<(TopicConfiguration|CloudFunctionConfiguration)>[\s\S]*?<\/\1>|<EventBridgeConfiguration\s*\/>|<EventBridgeConfiguration>[\s\S]*?<\/EventBridgeConfiguration>/g,
    ),
  ].map((match) => match[0]);
  return { queues, others };
}

/**
 * Whether two configurations would both match one event, which S3 refuses: event types that
 * can name the same event, prefixes of which one starts the other, suffixes likewise.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-filtering.html
 */
function ambiguous(configuration: BucketNotifications): boolean {
  const filters = [
    ...configuration.queues,
    ...configuration.others
      .filter((block) => !block.startsWith('<EventBridge'))
      .map((block) => filterOf(block)),
  ];
  const sameEvent = (a: string, b: string) =>
    a === b ||
    (a.endsWith(':*') && b.startsWith(a.slice(0, -1))) ||
    (b.endsWith(':*') && a.startsWith(b.slice(0, -1)));
  return filters.some((a, i) =>
    filters.some(
      (b, j) =>
        j > i &&
        (a.prefix.startsWith(b.prefix) || b.prefix.startsWith(a.prefix)) &&
        (a.suffix.endsWith(b.suffix) || b.suffix.endsWith(a.suffix)) &&
        a.events.some((event) => b.events.some((other) => sameEvent(event, other))),
    ),
  );
}

function eventMatches(patterns: string[], eventName: string): boolean {
  return patterns.some((pattern) => {
    const name = pattern.replace(/^s3:/, '');
    return name.endsWith(':*') ? eventName.startsWith(name.slice(0, -1)) : name === eventName;
  });
}

/** How S3 writes keys into notifications: form encoding, spaces as `+`, slashes kept. */
const encodeKey = (key: string) =>
  key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/%20/g, '+'))
    .join('/');

/** The request's whole body, as UTF-8. */
export async function readBody(request: FastifyRequest): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request.raw) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function queryOf(request: FastifyRequest): Record<string, string | undefined> {
  return (request.query ?? {}) as Record<string, string | undefined>;
}

/**
 * The access key id a request is signed with: the Authorization header's `Credential=`, or a
 * presigned URL's `X-Amz-Credential`; undefined for an anonymous request.
 */
export function requestAccessKey(request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization;
  const fromHeader = authorization ? /Credential=([^/,\s]+)\//.exec(authorization)?.[1] : undefined;
  if (fromHeader) return fromHeader;
  return queryOf(request)['X-Amz-Credential']?.split('/')[0];
}

/**
 * The requester as a notification names it: `AWS:` and the access key id, or `ANONYMOUS`.
 * (S3 names the IAM identity; the access key is what identifies a writer here.)
 */
const principalOf = (request: FastifyRequest) => {
  const accessKey = requestAccessKey(request);
  return accessKey === undefined ? 'ANONYMOUS' : `AWS:${accessKey}`;
};

/** A response header as one string. */
const replyHeader = (reply: FastifyReply, name: string) => {
  const value = reply.getHeader(name);
  return typeof value === 'string' ? value : undefined;
};

/**
 * Installs notification configuration and delivery on a fauxqs app. The caller passes
 * `observeSend` to the app's one onSend hook (it reads DeleteObjects results).
 */
export function installS3Notifications(app: FastifyInstance, options: S3NotificationOptions) {
  const targets = new Map<string, BucketNotifications>();
  const queueUrls = new Map<string, Promise<string>>();
  let counter = 0;
  /**
   * One call to the app's own SQS (the JSON protocol), in process: a notification costs no
   * connection or signing. Throws with the service's answer when it is not 200.
   */
  const sqsCall = async (action: string, input: Record<string, unknown>) => {
    const answer = await app.inject({
      method: 'POST',
      url: '/',
      headers: {
        'content-type': 'application/x-amz-json-1.0',
        'x-amz-target': `AmazonSQS.${action}`,
      },
      payload: JSON.stringify(input),
    });
    if (answer.statusCode !== 200) {
      throw new Error(`SQS ${action} answered ${answer.statusCode}: ${answer.body.slice(0, 300)}`);
    }
    return JSON.parse(answer.body) as Record<string, unknown>;
  };
  const sendMessage = (queueUrl: string, body: string) =>
    sqsCall('SendMessage', { QueueUrl: queueUrl, MessageBody: body });
  const queueUrlOf = (arn: string) => {
    let url = queueUrls.get(arn);
    if (!url) {
      const name = arn.split(':').at(-1) ?? '';
      url = sqsCall('GetQueueUrl', { QueueName: name }).then((out) => String(out.QueueUrl ?? ''));
      url.catch(() => queueUrls.delete(arn));
      queueUrls.set(arn, url);
    }
    return url;
  };
  // S3's sequencer grows with each change of a key; one counter for all keys keeps that.
  const sequencer = () => {
    counter += 1;
    return (BigInt(Date.now()) * 1_000_000n + BigInt(counter))
      .toString(16)
      .toUpperCase()
      .padStart(18, '0');
  };

  interface EventObject {
    size?: number;
    etag?: string;
    versionId?: string;
  }
  const send = async (
    bucket: string,
    key: string,
    eventName: string,
    principalId: string,
    object: EventObject,
    seq: string = sequencer(),
  ) => {
    for (const target of targets.get(bucket)?.queues ?? []) {
      if (!eventMatches(target.events, eventName)) continue;
      if (!key.startsWith(target.prefix) || !key.endsWith(target.suffix)) continue;
      const record = {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: options.region,
        eventTime: new Date().toISOString(),
        eventName,
        userIdentity: { principalId },
        requestParameters: { sourceIPAddress: '127.0.0.1' },
        responseElements: { 'x-amz-request-id': randomUUID(), 'x-amz-id-2': 'local' },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId: target.id,
          bucket: {
            name: bucket,
            ownerIdentity: { principalId: 'LOCAL' },
            arn: `arn:aws:s3:::${bucket}`,
          },
          object: {
            key: encodeKey(key),
            ...(object.size !== undefined && { size: object.size }),
            ...(object.etag !== undefined && { eTag: object.etag.replace(/"/g, '') }),
            ...(object.versionId !== undefined && { versionId: object.versionId }),
            sequencer: seq,
          },
        },
      };
      await sendMessage(await queueUrlOf(target.queueArn), JSON.stringify({ Records: [record] }));
    }
  };

  /** Sends an ObjectCreated event with the size and eTag of the object the write created. */
  const created = async (
    bucket: string,
    key: string,
    eventName: string,
    principalId: string,
    reply: FastifyReply,
  ) => {
    // Taken now, before the read, so a later change of the key gets a later one.
    const seq = sequencer();
    const versionId = replyHeader(reply, 'x-amz-version-id');
    const head = await app.inject({
      method: 'HEAD',
      url: `/${encodeURIComponent(bucket)}/${key.split('/').map(encodeURIComponent).join('/')}`,
      ...(versionId !== undefined && { query: { versionId } }),
    });
    if (head.statusCode !== 200) return;
    const etag = head.headers.etag;
    await send(
      bucket,
      key,
      eventName,
      principalId,
      {
        size: Number(head.headers['content-length'] ?? 0),
        ...(typeof etag === 'string' && { etag }),
        ...(versionId !== undefined && { versionId }),
      },
      seq,
    );
  };

  const deliveries = new WeakMap<FastifyRequest, (reply: FastifyReply) => Promise<void>>();
  const report = (error: unknown) => app.log.error({ err: error }, 's3 notification not delivered');

  app.addHook('onRequest', async (request, reply) => {
    const params = request.params as { bucket?: string; '*'?: string } | undefined;
    const bucket = params?.bucket;
    const key = params?.['*'];
    if (!bucket) return;
    const query = queryOf(request);
    if (!key && 'notification' in query) {
      if (request.method === 'PUT') {
        const configured = parseConfiguration(await readBody(request));
        if (ambiguous(configured)) {
          return reply
            .code(400)
            .header('content-type', 'application/xml')
            .send(
              '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code><Message>Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are overlapping for the same event type.</Message></Error>',
            );
        }
        // S3 confirms a new configuration with a test event to each target.
        for (const target of configured.queues) {
          const url = await queueUrlOf(target.queueArn).catch(() => undefined);
          if (!url) {
            return reply
              .code(400)
              .header('content-type', 'application/xml')
              .send(
                `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code><Message>Unable to validate the following destination configurations</Message><ArgumentName>${escapeXml(target.queueArn)}</ArgumentName></Error>`,
              );
          }
          await sendMessage(
            url,
            JSON.stringify({
              Service: 'Amazon S3',
              Event: 's3:TestEvent',
              Time: new Date().toISOString(),
              Bucket: bucket,
              RequestId: randomUUID(),
              HostId: 'local',
            }),
          );
        }
        targets.set(bucket, configured);
        return reply.code(200).send('');
      }
      if (request.method === 'GET') {
        const configured = targets.get(bucket) ?? { queues: [], others: [] };
        const filter = (rules: QueueTarget['filterRules']) =>
          rules.length === 0
            ? ''
            : `<Filter><S3Key>${rules.map((rule) => `<FilterRule><Name>${escapeXml(rule.name)}</Name><Value>${escapeXml(rule.value)}</Value></FilterRule>`).join('')}</S3Key></Filter>`;
        const body =
          configured.queues
            .map(
              (target) =>
                `<QueueConfiguration><Id>${escapeXml(target.id)}</Id><Queue>${escapeXml(target.queueArn)}</Queue>${target.events.map((event) => `<Event>${escapeXml(event)}</Event>`).join('')}${filter(target.filterRules)}</QueueConfiguration>`,
            )
            .join('') + configured.others.join('');
        return reply
          .code(200)
          .header('content-type', 'application/xml')
          .send(
            `<?xml version="1.0" encoding="UTF-8"?>\n<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${body}</NotificationConfiguration>`,
          );
      }
    }
    if (!targets.has(bucket)) return;
    const principal = principalOf(request);
    const copy = request.headers['x-amz-copy-source'] !== undefined;
    if (key && request.method === 'PUT' && query.partNumber === undefined && !copy) {
      // A PutObject's answer carries the eTag and its request the size: no read needed.
      const decoded = request.headers['x-amz-decoded-content-length'];
      const length = request.headers['content-length'];
      const size = Number(typeof decoded === 'string' ? decoded : (length ?? Number.NaN));
      deliveries.set(request, (reply) => {
        const etag = replyHeader(reply, 'etag');
        if (etag === undefined || !Number.isFinite(size)) {
          return created(bucket, key, 'ObjectCreated:Put', principal, reply);
        }
        const versionId = replyHeader(reply, 'x-amz-version-id');
        return send(bucket, key, 'ObjectCreated:Put', principal, {
          size,
          etag,
          ...(versionId !== undefined && { versionId }),
        });
      });
    } else if (key && request.method === 'PUT' && query.partNumber === undefined) {
      deliveries.set(request, (reply) =>
        created(bucket, key, 'ObjectCreated:Copy', principal, reply),
      );
    } else if (key && request.method === 'POST' && query.uploadId !== undefined) {
      deliveries.set(request, (reply) =>
        created(bucket, key, 'ObjectCreated:CompleteMultipartUpload', principal, reply),
      );
    } else if (key && request.method === 'DELETE' && query.uploadId === undefined) {
      deliveries.set(request, (reply) => {
        // A plain delete in a versioned bucket adds a delete marker; a delete with a version id
        // removes that version (or marker) for good.
        // https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-event-types-and-destinations.html
        const versionId = replyHeader(reply, 'x-amz-version-id');
        const marker =
          query.versionId === undefined && replyHeader(reply, 'x-amz-delete-marker') === 'true';
        return send(
          bucket,
          key,
          marker ? 'ObjectRemoved:DeleteMarkerCreated' : 'ObjectRemoved:Delete',
          principal,
          versionId !== undefined ? { versionId } : {},
        );
      });
    }
  });

  const observeSend = (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    const params = request.params as { bucket?: string; '*'?: string } | undefined;
    const bucket = params?.bucket;
    if (
      bucket &&
      !params?.['*'] &&
      request.method === 'POST' &&
      'delete' in queryOf(request) &&
      targets.has(bucket) &&
      reply.statusCode === 200 &&
      typeof payload === 'string'
    ) {
      const keys = tag(payload, 'Deleted').flatMap((deleted) => tag(deleted, 'Key'));
      const principal = principalOf(request);
      deliveries.set(request, async () => {
        for (const key of keys) await send(bucket, key, 'ObjectRemoved:Delete', principal, {});
      });
    }
  };

  app.addHook('onResponse', async (request, reply) => {
    const deliver = deliveries.get(request);
    // A failed request changes nothing, so S3 sends nothing. CompleteMultipartUpload can fail
    // inside a 200 (an <Error> body); the HEAD after it finds no new object then.
    if (!deliver || reply.statusCode < 200 || reply.statusCode >= 300) return;
    deliver(reply).catch(report);
  });
  return { observeSend };
}
