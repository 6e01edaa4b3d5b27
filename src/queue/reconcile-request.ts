import * as z from 'zod';
import { UsageError } from '../errors.ts';
import type { ReconcileRequest } from './reconcile.ts';

/**
 * The input of the `reconcile` function, from its schedule or `serverless invoke -f reconcile
 * --data '{...}'`: `{}` reconciles every rule; `rules` names some, `dryRun` sends nothing,
 * `force` lets deletes past the safety stop, `maxDeleteFraction` moves it (default 0.1).
 * Unknown keys are refused, so a typo never turns a dry run into a real one.
 */
const requestSchema = z.strictObject({
  rules: z.array(z.string().min(1)).min(1).optional(),
  dryRun: z.boolean().optional(),
  force: z.boolean().optional(),
  maxDeleteFraction: z.number().min(0).max(1).optional(),
});

/**
 * Parses a `reconcile` function input against the configured rule names; a UsageError names
 * what is wrong (an unknown rule among them).
 */
export function parseReconcileRequest(
  input: unknown,
  configured: readonly string[],
): ReconcileRequest {
  const result = requestSchema.safeParse(input ?? {});
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.join('.') || '(top level)';
    throw new UsageError(
      `the reconcile input is not valid: ${where}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const request = result.data;
  const rules = request.rules ?? [...configured];
  const unknown = rules.filter((rule) => !configured.includes(rule));
  if (unknown.length > 0) {
    throw new UsageError(
      `no rule named ${unknown.map((rule) => `"${rule}"`).join(', ')} in the configuration (rules: ${configured.join(', ')})`,
    );
  }
  return {
    rules: [...new Set(rules)],
    ...(request.dryRun !== undefined && { dryRun: request.dryRun }),
    ...(request.force !== undefined && { force: request.force }),
    ...(request.maxDeleteFraction !== undefined && {
      maxDeleteFraction: request.maxDeleteFraction,
    }),
  };
}
