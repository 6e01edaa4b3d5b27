import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { parseSize } from '../core/range-plan.ts';
import { UsageError } from '../errors.ts';
import { configSchema, type ReplicationConfig, type ReplicationRule } from './schema.ts';

/** A configuration that does not hold; the message names the rule and the field. */
export class ConfigError extends UsageError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

function describePath(path: readonly PropertyKey[], input: unknown): string {
  let text = '';
  let node: unknown = input;
  for (const part of path) {
    if (typeof part === 'number') {
      const name =
        typeof node === 'object' && node !== null && Array.isArray(node)
          ? (node[part] as { name?: unknown } | undefined)?.name
          : undefined;
      text += typeof name === 'string' ? `[${part}] (rule "${name}")` : `[${part}]`;
    } else {
      text += text === '' ? String(part) : `.${String(part)}`;
    }
    node =
      typeof node === 'object' && node !== null
        ? (node as Record<PropertyKey, unknown>)[part]
        : undefined;
  }
  return text || '(top level)';
}

function formatIssues(error: z.ZodError, input: unknown): string {
  return error.issues
    .map((issue) => {
      const where = describePath(issue.path, input);
      if (issue.code === 'unrecognized_keys') {
        return `${where}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      }
      return `${where}: ${issue.message}`;
    })
    .join('; ');
}

function prefixesOverlap(a: string, b: string): boolean {
  return a.startsWith(b) || b.startsWith(a);
}

/** Refuses rules that would replicate the same object twice. */
function checkOverlaps(rules: ReplicationRule[]): void {
  const names = new Set<string>();
  for (const rule of rules) {
    if (names.has(rule.name)) throw new ConfigError(`rules: the name "${rule.name}" is used twice`);
    names.add(rule.name);
  }
  for (let i = 0; i < rules.length; i++) {
    for (let j = i + 1; j < rules.length; j++) {
      const a = rules[i];
      const b = rules[j];
      if (!a || !b) continue;
      if (a.s3.bucket === b.s3.bucket && prefixesOverlap(a.s3.prefix, b.s3.prefix)) {
        throw new ConfigError(
          `rules "${a.name}" and "${b.name}" overlap: both replicate s3://${a.s3.bucket}/${a.s3.prefix.length > b.s3.prefix.length ? a.s3.prefix : b.s3.prefix}`,
        );
      }
      const sameContainer =
        a.azure.accountUrl.replace(/\/+$/, '').toLowerCase() ===
          b.azure.accountUrl.replace(/\/+$/, '').toLowerCase() &&
        a.azure.container === b.azure.container;
      if (sameContainer && prefixesOverlap(a.azure.prefix, b.azure.prefix)) {
        throw new ConfigError(
          `rules "${a.name}" and "${b.name}" overlap: both replicate ${a.azure.accountUrl}/${a.azure.container}/${a.azure.prefix.length > b.azure.prefix.length ? a.azure.prefix : b.azure.prefix}`,
        );
      }
    }
  }
}

/** Validates a parsed configuration object; throws `ConfigError` naming the rule and field. */
export function validateConfig(input: unknown): ReplicationConfig {
  const result = configSchema.safeParse(input);
  if (!result.success) throw new ConfigError(`configuration: ${formatIssues(result.error, input)}`);
  result.data.rules.forEach((rule, index) => {
    for (const field of ['partSize', 'fanOutAbove', 'fanOutRangeSize'] as const) {
      try {
        parseSize(String(rule[field]));
      } catch (error) {
        throw new ConfigError(
          `rules[${index}] (rule "${rule.name}").${field}: ${(error as Error).message}`,
        );
      }
    }
  });
  checkOverlaps(result.data.rules);
  return result.data;
}

/** Reads and validates a YAML or JSON configuration file. */
export async function loadConfig(path: string): Promise<ReplicationConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read the configuration file ${path}`, { cause: error });
  }
  let value: unknown;
  try {
    value = /\.json$/i.test(path) ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ConfigError(
      // The yaml package's first line ends in ":" before an excerpt of the file.
      `${path} is not valid ${/\.json$/i.test(path) ? 'JSON' : 'YAML'}: ${(error as Error).message.split('\n')[0]?.replace(/:\s*$/, '')}`,
      {
        cause: error,
      },
    );
  }
  return validateConfig(value);
}
