import {
  type Event,
  GetBucketNotificationConfigurationCommand,
  type NotificationConfiguration,
  PutBucketNotificationConfigurationCommand,
  type QueueConfiguration,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { ReplicationRule } from '../config/schema.ts';
import { allowed } from '../core/route.ts';
import { UsageError } from '../errors.ts';

/**
 * The queue configurations the rules need on each bucket, one per rule (its id names it):
 * ObjectCreated:* where changes flow from S3, ObjectRemoved:* where deletes are mirrored,
 * filtered by the rule's prefix. Rules of one bucket never overlap (the configuration refuses
 * that), so neither do their configurations, which S3 would refuse.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-filtering.html
 */
export function wantedConfigurations(
  rules: ReplicationRule[],
  queueArn: string,
  idPrefix: string,
): Map<string, QueueConfiguration[]> {
  const byBucket = new Map<string, QueueConfiguration[]>();
  for (const rule of rules) {
    const events: Event[] = [];
    if (allowed(rule, 's3')) events.push('s3:ObjectCreated:*');
    if (rule.deletes === 'mirror') events.push('s3:ObjectRemoved:*');
    if (events.length === 0) continue;
    const wanted = byBucket.get(rule.s3.bucket) ?? [];
    wanted.push({
      Id: `${idPrefix}${rule.name}`,
      QueueArn: queueArn,
      Events: events,
      ...(rule.s3.prefix !== '' && {
        Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: rule.s3.prefix }] } },
      }),
    });
    byBucket.set(rule.s3.bucket, wanted);
  }
  return byBucket;
}

/** What the three kinds of configuration share: an id, events and a key filter. */
type Filtered = Pick<QueueConfiguration, 'Id' | 'Events' | 'Filter'>;

function filterValue(configuration: Filtered, name: 'prefix' | 'suffix'): string {
  const rule = configuration.Filter?.Key?.FilterRules?.find(
    (each) => each.Name?.toLowerCase() === name,
  );
  return rule?.Value ?? '';
}

/** Whether two event types can name the same event (`s3:ObjectCreated:*` and `…:Put` can). */
function eventsOverlap(a: string, b: string): boolean {
  const covers = (pattern: string, name: string) =>
    pattern === name || (pattern.endsWith(':*') && name.startsWith(pattern.slice(0, -1)));
  return covers(a, b) || covers(b, a);
}

/** Whether S3 would refuse the two configurations together (overlapping filters and events). */
export function overlaps(a: Filtered, b: Filtered): boolean {
  const prefixA = filterValue(a, 'prefix');
  const prefixB = filterValue(b, 'prefix');
  const suffixA = filterValue(a, 'suffix');
  const suffixB = filterValue(b, 'suffix');
  return (
    (prefixA.startsWith(prefixB) || prefixB.startsWith(prefixA)) &&
    (suffixA.endsWith(suffixB) || suffixB.endsWith(suffixA)) &&
    (a.Events ?? []).some((event) => (b.Events ?? []).some((other) => eventsOverlap(event, other)))
  );
}

/** What `setup s3` does to one bucket. */
export interface BucketPlan {
  bucket: string;
  before: NotificationConfiguration;
  after: NotificationConfiguration;
  /** Our configurations added or replaced, and removed. */
  added: QueueConfiguration[];
  removed: QueueConfiguration[];
  /** Configurations of others that are kept as they are. */
  kept: number;
  /** Why the bucket cannot be set up: others' configurations that overlap ours. */
  conflicts: string[];
  /** False when the bucket already holds exactly what it should. */
  changes: boolean;
}

/** JSON with keys in one order, whichever order a parser gave them in. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    item && typeof item === 'object' && !Array.isArray(item)
      ? Object.fromEntries(Object.entries(item).sort(([a], [b]) => a.localeCompare(b)))
      : item,
  );
}

function others(configuration: NotificationConfiguration, idPrefix: string) {
  const ours = (item: Filtered) => item.Id?.startsWith(idPrefix) === true;
  return {
    topics: (configuration.TopicConfigurations ?? []).filter((item) => !ours(item)),
    queues: (configuration.QueueConfigurations ?? []).filter((item) => !ours(item)),
    lambdas: (configuration.LambdaFunctionConfigurations ?? []).filter((item) => !ours(item)),
    ours: (configuration.QueueConfigurations ?? []).filter(ours),
  };
}

/**
 * The bucket's configuration with ours merged in (or taken out, `remove`): every other
 * configuration, EventBridge included, is kept exactly as it was.
 */
export function planBucket(
  bucket: string,
  before: NotificationConfiguration,
  wanted: QueueConfiguration[],
  idPrefix: string,
  remove = false,
): BucketPlan {
  const { topics, queues, lambdas, ours } = others(before, idPrefix);
  const adding = remove ? [] : wanted;
  const conflicts: string[] = [];
  for (const mine of adding) {
    for (const [kind, items] of [
      ['topic', topics],
      ['queue', queues],
      ['Lambda', lambdas],
    ] as const) {
      for (const item of items) {
        if (overlaps(mine, item)) {
          conflicts.push(
            `its ${kind} configuration "${item.Id ?? '(no id)'}" (${(item.Events ?? []).join(', ')} under "${filterValue(item, 'prefix')}") overlaps ${(mine.Events ?? []).join(', ')} under "${filterValue(mine, 'prefix')}", which S3 refuses`,
          );
        }
      }
    }
  }
  const after: NotificationConfiguration = {
    ...(topics.length > 0 && { TopicConfigurations: topics }),
    ...(queues.length + adding.length > 0 && { QueueConfigurations: [...queues, ...adding] }),
    ...(lambdas.length > 0 && { LambdaFunctionConfigurations: lambdas }),
    ...(before.EventBridgeConfiguration && {
      EventBridgeConfiguration: before.EventBridgeConfiguration,
    }),
  };
  const same = canonical(ours) === canonical(adding);
  return {
    bucket,
    before,
    after,
    added: same ? [] : adding,
    removed: same ? [] : ours,
    kept: topics.length + queues.length + lambdas.length,
    conflicts,
    changes: !same,
  };
}

/** The configuration as S3 answered it, without the SDK's response metadata. */
function configurationOf(answer: NotificationConfiguration): NotificationConfiguration {
  return {
    ...(answer.TopicConfigurations?.length && { TopicConfigurations: answer.TopicConfigurations }),
    ...(answer.QueueConfigurations?.length && { QueueConfigurations: answer.QueueConfigurations }),
    ...(answer.LambdaFunctionConfigurations?.length && {
      LambdaFunctionConfigurations: answer.LambdaFunctionConfigurations,
    }),
    ...(answer.EventBridgeConfiguration && {
      EventBridgeConfiguration: answer.EventBridgeConfiguration,
    }),
  };
}

export interface SetupS3Options {
  rules: ReplicationRule[];
  /** The events queue of the stack (or of the local mirror). */
  queueArn: string;
  /** Prefix of the ids of our configurations: `s3az-<stack>-`. */
  idPrefix: string;
  /** The S3 client for a bucket (its Region). */
  clientFor(rule: ReplicationRule): S3Client;
  dryRun?: boolean;
  remove?: boolean;
}

/**
 * Adds (or with `remove` takes away) the notifications each rule needs on its bucket, merged
 * with what the bucket has: read, merge, write. S3 replaces a bucket's notification
 * configuration as a whole and has no conditional write for it, so another tool changing it
 * at the same moment can lose its change; run setup when nothing else does.
 * A bucket whose other configurations overlap ours is refused with the reason, before any
 * bucket is changed.
 */
export async function setupS3(options: SetupS3Options): Promise<BucketPlan[]> {
  const wanted = wantedConfigurations(options.rules, options.queueArn, options.idPrefix);
  const plans: BucketPlan[] = [];
  for (const [bucket, configurations] of wanted) {
    const rule = options.rules.find((each) => each.s3.bucket === bucket);
    if (!rule) continue;
    const client = options.clientFor(rule);
    const answer = await client
      .send(new GetBucketNotificationConfigurationCommand({ Bucket: bucket }))
      .catch((error: Error) => {
        throw new UsageError(
          `s3://${bucket}: its notification configuration cannot be read (${error.name}: ${error.message.split('\n')[0]})`,
          { cause: error },
        );
      });
    plans.push(
      planBucket(
        bucket,
        configurationOf(answer),
        configurations,
        options.idPrefix,
        options.remove === true,
      ),
    );
  }
  const refused = plans.filter((plan) => plan.conflicts.length > 0);
  if (refused.length > 0 && !options.remove) {
    const first = refused[0] as BucketPlan;
    throw new UsageError(
      `s3://${first.bucket}: ${first.conflicts[0]}; give the rule a prefix that does not overlap it, or change that configuration${refused.length > 1 || first.conflicts.length > 1 ? ` (and ${refused.reduce((sum, plan) => sum + plan.conflicts.length, 0) - 1} more)` : ''}`,
    );
  }
  if (options.dryRun) return plans;
  for (const plan of plans) {
    if (!plan.changes) continue;
    const rule = options.rules.find((each) => each.s3.bucket === plan.bucket) as ReplicationRule;
    await options
      .clientFor(rule)
      .send(
        new PutBucketNotificationConfigurationCommand({
          Bucket: plan.bucket,
          NotificationConfiguration: plan.after,
        }),
      )
      .catch((error: Error) => {
        throw new UsageError(
          `s3://${plan.bucket}: S3 refused the notification configuration (${error.name}: ${error.message.split('\n')[0]})`,
          { cause: error },
        );
      });
  }
  return plans;
}
