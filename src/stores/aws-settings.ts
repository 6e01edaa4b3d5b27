import { SQSClient } from '@aws-sdk/client-sqs';
import { SDK_ATTEMPTS } from '../queue/timing.ts';

/**
 * What every function needs to reach AWS: the settings of a client from the environment, and
 * the SQS client. Kept apart from `clients.ts` (S3 and Azure) so that a function that never
 * touches a store (the webhook, redrive) does not load either SDK: a bundle takes whole files,
 * with everything they import.
 */
export type Environment = Record<string, string | undefined>;

/** Builds the SQS client from the standard AWS environment (`AWS_ENDPOINT_URL_SQS` included). */
export function makeSqsClient(env: Environment = process.env): SQSClient {
  return new SQSClient(awsClientSettings(env, 'SQS'));
}

/**
 * AWS clients' settings from an environment that may not be `process.env`: its region, its
 * keys (else the SDK's own chain), and its endpoint for the service (`AWS_ENDPOINT_URL_<ID>`,
 * else `AWS_ENDPOINT_URL`).
 */
export function awsClientSettings(env: Environment, serviceId: string) {
  const endpoint = env[`AWS_ENDPOINT_URL_${serviceId}`] ?? env.AWS_ENDPOINT_URL;
  return {
    ...(endpoint !== undefined && endpoint !== '' && { endpoint }),
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    maxAttempts: SDK_ATTEMPTS,
    ...credentialsOf(env),
  };
}

/** The environment's AWS keys, if it holds them; otherwise nothing (the SDK's chain decides). */
export function credentialsOf(env: Environment) {
  // Environment keys come first, as in the SDK's own chain; otherwise the chain decides.
  return env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
    ? {
        credentials: {
          accessKeyId: env.AWS_ACCESS_KEY_ID,
          secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
          ...(env.AWS_SESSION_TOKEN && { sessionToken: env.AWS_SESSION_TOKEN }),
        },
      }
    : {};
}
