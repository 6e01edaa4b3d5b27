import * as z from 'zod';

const sizeText = z.union([
  z.number().int().positive(),
  z.string().regex(/^\s*\d+(\.\d+)?\s*[a-zA-Z]*\s*$/),
]);

const azureCredential = z.union([
  z.strictObject({
    /** AWS Secrets Manager secret holding a connection string, account key or SAS. */
    secretArn: z.string().startsWith('arn:'),
    /** The customer managed KMS key the secret is encrypted with, if not Secrets Manager's own. */
    kmsKeyId: z.string().min(1).optional(),
  }),
  z.strictObject({
    /** Workload identity federation: no secret at all. */
    workloadIdentity: z.strictObject({ tenantId: z.string().min(1), clientId: z.string().min(1) }),
  }),
  z.strictObject({
    /** Local use: the connection string comes from this environment variable. */
    connectionStringEnv: z.string().min(1),
  }),
]);

/** One replication rule: an S3 bucket (and prefix) paired with an Azure container (and prefix). */
export const ruleSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, 'letters, digits, ".", "_" or "-", at most 63'),
  s3: z
    .strictObject({
      bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'not a valid S3 bucket name'),
      prefix: z.string().default(''),
      region: z.string().min(1).optional(),
      roleArn: z.string().startsWith('arn:').optional(),
      /**
       * The external id the role's trust policy requires (`sts:ExternalId`), passed to
       * AssumeRole. STS: 2-1224 characters of [\w+=,.@:/-].
       * https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
       */
      externalId: z
        .string()
        .regex(
          /^[\w+=,.@:/-]{2,1224}$/,
          '2 to 1224 of the characters A-Z a-z 0-9 _ + = , . @ : / -',
        )
        .optional(),
      kmsKeyId: z.string().min(1).optional(),
      /**
       * Customer managed KMS keys the bucket's objects are already encrypted with (its default
       * encryption, or writers' SSE-KMS): reading them needs kms:Decrypt on each.
       */
      readKmsKeyIds: z.array(z.string().min(1)).optional(),
      /**
       * The bucket owner's account id, when it is neither this stack's account nor `roleArn`'s:
       * only S3 notifications from a bucket of this account reach the events queue.
       */
      bucketOwner: z
        .string()
        .regex(/^\d{12}$/, 'a 12-digit AWS account id')
        .optional(),
    })
    .refine((s3) => s3.externalId === undefined || s3.roleArn !== undefined, {
      message: 'externalId is passed when assuming roleArn, so it needs roleArn',
      path: ['externalId'],
    }),
  azure: z.strictObject({
    accountUrl: z.url(),
    container: z
      .string()
      .regex(/^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/, 'not a valid Azure container name'),
    prefix: z.string().default(''),
    credential: azureCredential.optional(),
    encryptionScope: z.string().min(1).optional(),
  }),
  direction: z.enum(['both', 's3-to-azure', 'azure-to-s3']).default('both'),
  deletes: z.enum(['mirror', 'ignore']).default('ignore'),
  conflictWinner: z.enum(['s3', 'azure']).default('s3'),
  include: z.array(z.string().min(1)).default([]),
  exclude: z.array(z.string().min(1)).default([]),
  partSize: sizeText.default('8MiB'),
  concurrency: z.number().int().min(1).max(64).default(8),
  /** Objects larger than this are copied by parallel range tasks and one finishing task. */
  fanOutAbove: sizeText.default('8GiB'),
  /** Bytes each range task of a fanned-out copy stages (whole parts, at least one). */
  fanOutRangeSize: sizeText.default('1GiB'),
});

/** How the Event Grid webhook authenticates deliveries. */
export const eventGridAuthSchema = z.union([
  z.strictObject({
    mode: z.literal('entra'),
    tenantId: z.string().min(1),
    /** The application ID URI or client id the subscription's tokens are issued for. */
    audience: z.string().min(1),
    /**
     * Event Grid's own application id(s) in this cloud, when not the public cloud's (a
     * delivery's token must be issued to one of them).
     */
    eventGridAppIds: z
      .array(
        z
          .string()
          .regex(/^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/i, 'not an application id (a GUID)'),
      )
      .min(1)
      .optional(),
  }),
  z.strictObject({
    mode: z.literal('shared-secret'),
    secretArn: z.string().startsWith('arn:'),
    /** The customer managed KMS key the secret is encrypted with, if not Secrets Manager's own. */
    kmsKeyId: z.string().min(1).optional(),
  }),
  z.strictObject({
    mode: z.literal('shared-secret'),
    /** Local use: the secret comes from this environment variable. */
    secretEnv: z.string().min(1),
  }),
  z.strictObject({ mode: z.literal('none'), allowUnauthenticated: z.literal(true) }),
]);

/** The whole configuration file. */
export const configSchema = z.strictObject({
  rules: z.array(ruleSchema).min(1, 'at least one rule is needed'),
  eventGrid: z.strictObject({ auth: eventGridAuthSchema }).optional(),
});

export type ReplicationRule = z.output<typeof ruleSchema>;
export type ReplicationConfig = z.output<typeof configSchema>;
