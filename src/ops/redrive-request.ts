import * as z from 'zod';
import { UsageError } from '../errors.ts';
import { parseDuration, type RedriveOptions } from './redrive.ts';

/**
 * The input of the `redrive` function, as `serverless invoke -f redrive --data '{...}'` passes
 * it: the CLI's filters by the same names. Unknown keys are refused, so a typo never widens a
 * re-drive to everything.
 */
const requestSchema = z.strictObject({
  queue: z.enum(['events', 'tasks']).optional(),
  reason: z.union([z.string().min(1), z.array(z.string().min(1))]).optional(),
  error: z.string().min(1).optional(),
  rule: z.string().min(1).optional(),
  prefix: z.string().optional(),
  olderThan: z.string().min(1).optional(),
  newerThan: z.string().min(1).optional(),
  max: z.number().int().positive().optional(),
  rate: z.number().positive().optional(),
  dryRun: z.boolean().optional(),
});

/** Parses a `redrive` function input; a UsageError names what is wrong. */
export function parseRedriveRequest(input: unknown): RedriveOptions {
  const result = requestSchema.safeParse(input ?? {});
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.join('.') || '(top level)';
    throw new UsageError(
      `the redrive input is not valid: ${where}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const request = result.data;
  const reasons =
    request.reason === undefined
      ? undefined
      : Array.isArray(request.reason)
        ? request.reason
        : request.reason.split(',').map((reason) => reason.trim());
  return {
    ...(request.queue !== undefined && { queue: request.queue }),
    ...(reasons !== undefined && { reasons }),
    ...(request.error !== undefined && { error: request.error }),
    ...(request.rule !== undefined && { rule: request.rule }),
    ...(request.prefix !== undefined && { prefix: request.prefix }),
    ...(request.olderThan !== undefined && {
      olderThanMs: parseDuration(request.olderThan, 'olderThan'),
    }),
    ...(request.newerThan !== undefined && {
      newerThanMs: parseDuration(request.newerThan, 'newerThan'),
    }),
    ...(request.max !== undefined && { max: request.max }),
    ...(request.rate !== undefined && { ratePerSecond: request.rate }),
    ...(request.dryRun !== undefined && { dryRun: request.dryRun }),
  };
}
