import { isAbsolute, resolve } from 'node:path';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { DEFAULT_ROLE_SESSION_NAME } from '../auth/aws-role.ts';
import {
  type DeliveryAuth,
  RereadableSharedSecret,
  SECRET_REREAD_MILLISECONDS,
} from '../auth/event-grid-auth.ts';
import { type SecretSource, SecretsManagerSource } from '../auth/secrets.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { ReplicationConfig, ReplicationRule } from '../config/schema.ts';
import { PullMemory } from '../copy/pull-memory.ts';
import { Telemetry } from '../observe/telemetry.ts';
import type { TaskStores } from '../queue/task-record.ts';
import { DELETE_HOLD_SECONDS, MAX_RECEIVES, RETRY_BASE_SECONDS } from '../queue/timing.ts';
import { awsClientSettings, type Environment, makeSqsClient } from '../stores/aws-settings.ts';
import type { AzureBlobObjectStore } from '../stores/azure-blob.ts';
import type { Side } from '../stores/object-store.ts';
import type { S3ObjectStore } from '../stores/s3.ts';

// What a function may not need is loaded on first use, each in its own chunk of the bundle
// (esbuild.config.mjs): the S3 and Azure SDKs with a rule's stores (rule-stores.ts; not in the
// webhook or redrive, and in plan only for directories and reconcile runs), STS for a rule's
// roleArn or workload identity, Secrets Manager for secrets it names, `@azure/identity` for the
// Azure credentials that need it (see azure-service.ts).

/** The queues of the pipeline, named by the environment variables that hold their URLs. */
export const QUEUE_VARIABLES = {
  events: 'S3AZ_EVENTS_QUEUE_URL',
  eventsDeadLetter: 'S3AZ_EVENTS_DLQ_URL',
  tasks: 'S3AZ_TASKS_QUEUE_URL',
  tasksDeadLetter: 'S3AZ_TASKS_DLQ_URL',
} as const;

export type QueueName = keyof typeof QUEUE_VARIABLES;

/** Both stores of one rule. */
export interface RuleStores {
  s3: S3ObjectStore;
  azure: AzureBlobObjectStore;
  /** The value of the rule's Azure credential secret these stores were built with, if any. */
  azureSecret?: string;
}

/**
 * Everything the handlers need, built once per cold start from the validated configuration
 * and environment. Handlers get it from `getRuntime()`; nothing else builds SDK clients.
 */
export interface Runtime {
  config: ReplicationConfig;
  sqs: SQSClient;
  telemetry: Telemetry;
  pullMemory: PullMemory;
  /** Seconds a failed message waits before its first retry (doubling per receive). */
  retryBaseSeconds: number;
  /** The work queues' maxReceiveCount (`S3AZ_MAX_RECEIVES`, as in serverless.yml). */
  maxReceives: number;
  /** How long a delete in doubt waits (`S3AZ_DELETE_HOLD_SECONDS`; see DELETE_HOLD_SECONDS). */
  deleteHoldSeconds: number;
  /**
   * The S3 principals the replicator writes as (`S3AZ_OWN_S3_PRINCIPALS`, comma-separated;
   * see `ProvenanceOptions`). Empty: S3 events say nothing about provenance.
   */
  ownS3Principals: readonly string[];
  /** The URL of one of the pipeline's queues; a ConfigError naming the variable if unset. */
  queueUrl(name: QueueName): string;
  /** The stores of a rule, built on first use and reused. */
  storesOf(rule: ReplicationRule): Promise<RuleStores>;
  /**
   * Called when Azure refused the credential of `refused` (a rule's stores): whether the
   * rule's credential secret now holds another value (rotated), in which case `storesOf`
   * builds new stores with it and the work is worth one more try. The secret is read again
   * at most once a minute, so a wrong secret costs no read per task.
   */
  renewAzureCredential(rule: ReplicationRule, refused: RuleStores): Promise<boolean>;
  /**
   * The webhook's delivery authentication. A secret from Secrets Manager is read once, and
   * again (at most once a minute) when a delivery carries another value: it may be rotated.
   */
  webhookAuth(): Promise<DeliveryAuth>;
}

export interface RuntimeOptions {
  env?: Environment;
  /** Already validated configuration (otherwise read from the file `S3AZ_CONFIG` names). */
  config?: ReplicationConfig;
  /** Where secrets come from (default: AWS Secrets Manager). */
  secrets?: SecretSource;
  sqs?: SQSClient;
  telemetry?: Telemetry;
}

/** Powertools logger and metrics named by the environment (service name, namespace). */
export function createTelemetry(env: Environment = process.env): Telemetry {
  const serviceName = env.POWERTOOLS_SERVICE_NAME ?? 's3-azure-replicator';
  return new Telemetry(
    new Logger({ serviceName }),
    new Metrics({
      namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? 'S3AzureReplicator',
      serviceName,
    }),
  );
}

function integerVariable(env: Environment, name: string, fallback: number, max: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new ConfigError(`environment variable ${name} must be a whole number from 0 to ${max}`);
  }
  return value;
}

/** Builds the runtime. Configuration problems throw a ConfigError naming what is wrong. */
export async function buildRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const env = options.env ?? process.env;
  let config = options.config;
  if (!config) {
    const path = env.S3AZ_CONFIG;
    if (!path) {
      throw new ConfigError(
        'environment variable S3AZ_CONFIG is not set: it names the replication configuration file',
      );
    }
    config = await loadConfig(isAbsolute(path) ? path : resolve(env.LAMBDA_TASK_ROOT ?? '.', path));
  }
  const retryBaseSeconds = integerVariable(
    env,
    'S3AZ_RETRY_BASE_SECONDS',
    RETRY_BASE_SECONDS,
    3600,
  );
  const maxReceives = integerVariable(env, 'S3AZ_MAX_RECEIVES', MAX_RECEIVES, 1000);
  const deleteHoldSeconds = integerVariable(
    env,
    'S3AZ_DELETE_HOLD_SECONDS',
    DELETE_HOLD_SECONDS,
    900,
  );
  if (maxReceives < 1)
    throw new ConfigError('environment variable S3AZ_MAX_RECEIVES must be at least 1');
  const ownS3Principals = (env.S3AZ_OWN_S3_PRINCIPALS ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  for (const entry of ownS3Principals) {
    if (entry === ':' || entry === '*:') {
      throw new ConfigError(
        `environment variable S3AZ_OWN_S3_PRINCIPALS: "${entry}" would match every principal`,
      );
    }
  }
  // STS: 2-64 characters of [\w+=,.@-].
  const roleSessionName = env.S3AZ_ROLE_SESSION_NAME ?? DEFAULT_ROLE_SESSION_NAME;
  if (!/^[\w+=,.@-]{2,64}$/.test(roleSessionName)) {
    throw new ConfigError(
      'environment variable S3AZ_ROLE_SESSION_NAME must be 2 to 64 of the characters A-Z a-z 0-9 + = , . @ _ -',
    );
  }
  const sqs = options.sqs ?? makeSqsClient(env);
  const telemetry = options.telemetry ?? createTelemetry(env);
  let secretSource: Promise<SecretSource> | undefined =
    options.secrets && Promise.resolve(options.secrets);
  const secrets = (): Promise<SecretSource> => {
    if (!secretSource) {
      secretSource = import('@aws-sdk/client-secrets-manager').then(
        ({ SecretsManagerClient }) =>
          new SecretsManagerSource(
            new SecretsManagerClient(awsClientSettings(env, 'SECRETS_MANAGER')),
          ),
      );
      secretSource.catch(() => {
        secretSource = undefined;
      });
    }
    return secretSource;
  };
  const lazySecrets: Required<SecretSource> = {
    get: async (arn) => (await secrets()).get(arn),
    refresh: async (arn) => {
      const source = await secrets();
      return source.refresh ? source.refresh(arn) : source.get(arn);
    },
  };
  let storeBuilder: Promise<(rule: ReplicationRule) => Promise<RuleStores>> | undefined;
  const ruleStores = () => {
    if (!storeBuilder) {
      storeBuilder = ruleStoresModule().then(({ ruleStoreBuilder }) =>
        ruleStoreBuilder({ env, secrets: lazySecrets, roleSessionName }),
      );
      storeBuilder.catch(() => {
        storeBuilder = undefined;
      });
    }
    return storeBuilder;
  };
  const stores = new Map<string, Promise<RuleStores>>();
  const secretRereads = new Map<string, number>();
  let auth: Promise<DeliveryAuth> | undefined;
  const validated = config;

  return {
    config: validated,
    sqs,
    telemetry,
    pullMemory: new PullMemory(),
    retryBaseSeconds,
    ownS3Principals,
    maxReceives,
    deleteHoldSeconds,
    queueUrl(name) {
      const variable = QUEUE_VARIABLES[name];
      const url = env[variable];
      if (!url) throw new ConfigError(`environment variable ${variable} is not set`);
      return url;
    },
    storesOf(rule) {
      let built = stores.get(rule.name);
      if (!built) {
        built = ruleStores().then((build) => build(rule));
        // A failure (a secret not readable yet) is not kept: the next task tries again.
        built.catch(() => stores.delete(rule.name));
        stores.set(rule.name, built);
      }
      return built;
    },
    async renewAzureCredential(rule, refused) {
      const credential = rule.azure.credential;
      if (!credential || !('secretArn' in credential) || refused.azureSecret === undefined) {
        return false;
      }
      const { secretArn } = credential;
      const last = secretRereads.get(secretArn) ?? Number.NEGATIVE_INFINITY;
      const fresh = Date.now() - last >= SECRET_REREAD_MILLISECONDS;
      if (fresh) secretRereads.set(secretArn, Date.now());
      // Within the minute (another task or rule read it just now) the cached value is as new.
      const current = await (fresh ? lazySecrets.refresh(secretArn) : lazySecrets.get(secretArn));
      if (current === refused.azureSecret) return false;
      const built = stores.get(rule.name);
      if (built && (await built.catch(() => undefined)) === refused) stores.delete(rule.name);
      return true;
    },
    webhookAuth() {
      auth ??= (async (): Promise<DeliveryAuth> => {
        const configured = validated.eventGrid?.auth;
        if (!configured) {
          throw new ConfigError(
            'eventGrid.auth is not configured: the webhook refuses every delivery until it says how they are authenticated',
          );
        }
        if (configured.mode === 'shared-secret') {
          if ('secretEnv' in configured) {
            const secret = env[configured.secretEnv];
            if (!secret) {
              throw new ConfigError(
                `eventGrid.auth.secretEnv names ${configured.secretEnv}, which is not set`,
              );
            }
            return { mode: 'shared-secret', secret };
          }
          const { secretArn } = configured;
          return new RereadableSharedSecret((await lazySecrets.get(secretArn)).trim(), async () =>
            (await lazySecrets.refresh(secretArn)).trim(),
          );
        }
        if (configured.mode === 'entra') {
          return {
            mode: 'entra',
            tenantId: configured.tenantId,
            audience: configured.audience,
            ...(configured.eventGridAppIds && { eventGridAppIds: configured.eventGridAppIds }),
          };
        }
        return { mode: 'none' };
      })();
      auth.catch(() => {
        auth = undefined;
      });
      return auth;
    },
  };
}

type RuleStoresModule = typeof import('./rule-stores.ts');
let ruleStoresLoaded: Promise<RuleStoresModule> | undefined;

/**
 * The module that builds rules' stores (and loads the S3 and Azure SDKs with it): imported on
 * the first `storesOf`, unless the function provided it (`provideRuleStores`).
 */
function ruleStoresModule(): Promise<RuleStoresModule> {
  if (!ruleStoresLoaded) {
    ruleStoresLoaded = import('./rule-stores.ts');
    ruleStoresLoaded.catch(() => {
      ruleStoresLoaded = undefined;
    });
  }
  return ruleStoresLoaded;
}

/**
 * For a function that uses a rule's stores in every invocation (copy): it imports rule-stores.ts
 * itself, so that the stores' SDKs load with the function (its init phase), and hands it to the
 * runtime here, so that no invocation imports it again.
 */
export function provideRuleStores(module: RuleStoresModule): void {
  ruleStoresLoaded = Promise.resolve(module);
}

/**
 * This process's logger and metrics. The handlers' middlewares need them before the runtime
 * is built (which reads the configuration), so they exist from module load; they hold no
 * clients or secrets.
 */
export const processTelemetry: Telemetry = createTelemetry();

let current: Promise<Runtime> | undefined;

/** The runtime of this process (cold start), built on first use from `process.env`. */
/**
 * A rule's stores as a task copying from `sourceSide` uses them (the copy step, and the plan
 * step's own copies), with the renewal of the rule's Azure credential that the copy step tries
 * once after a refusal.
 */
export async function taskStoresOf(
  built: Runtime,
  rule: ReplicationRule,
  sourceSide: Side,
): Promise<TaskStores> {
  const stores = await built.storesOf(rule);
  const renewCredential = () => built.renewAzureCredential(rule, stores);
  return sourceSide === 's3'
    ? { source: stores.s3, destination: stores.azure, renewCredential }
    : { source: stores.azure, destination: stores.s3, renewCredential };
}

export function getRuntime(): Promise<Runtime> {
  current ??= buildRuntime({ telemetry: processTelemetry });
  current.catch(() => {
    current = undefined;
  });
  return current;
}
