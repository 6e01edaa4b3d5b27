import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { ConfigError, loadConfig, validateConfig } from '../../src/config/load.ts';
import { configSchema } from '../../src/config/schema.ts';

const rule = (overrides: Record<string, unknown> = {}) => ({
  name: 'raw',
  s3: { bucket: 'raw-bucket', prefix: 'in/' },
  azure: { accountUrl: 'https://acct.blob.core.windows.net', container: 'raw' },
  ...overrides,
});

describe('Function: validateConfig', () => {
  it('fills the defaults of a minimal rule', () => {
    const config = validateConfig({ rules: [rule()] });
    expect(config.rules[0]).toMatchObject({
      direction: 'both',
      deletes: 'ignore',
      conflictWinner: 's3',
      include: [],
      exclude: [],
      partSize: '8MiB',
      concurrency: 8,
      azure: { prefix: '' },
    });
  });

  it('refuses an unknown key, naming the rule and the key', () => {
    expect(() => validateConfig({ rules: [rule({ deltes: 'mirror' })] })).toThrow(
      /rules\[0\] \(rule "raw"\): unknown key "deltes"/,
    );
    expect(() => validateConfig({ rules: [rule()], extra: 1 })).toThrow(/unknown key "extra"/);
  });

  it('refuses a bad value, naming the rule and the field', () => {
    expect(() => validateConfig({ rules: [rule({ direction: 'sideways' })] })).toThrow(
      /rules\[0\] \(rule "raw"\)\.direction/,
    );
    expect(() => validateConfig({ rules: [rule({ s3: { bucket: 'Bad_Bucket' } })] })).toThrow(
      /rules\[0\] \(rule "raw"\)\.s3\.bucket: not a valid S3 bucket name/,
    );
    expect(() => validateConfig({ rules: [rule({ partSize: '8XB' })] })).toThrow(/partSize/);
  });

  it('refuses rules that would replicate the same object twice', () => {
    const second = rule({
      name: 'nested',
      s3: { bucket: 'raw-bucket', prefix: 'in/sub/' },
      azure: { accountUrl: 'https://acct.blob.core.windows.net', container: 'other' },
    });
    expect(() => validateConfig({ rules: [rule(), second] })).toThrow(
      /rules "raw" and "nested" overlap: both replicate s3:\/\/raw-bucket\/in\/sub\//,
    );
    const sameContainer = rule({ name: 'twin', s3: { bucket: 'other-bucket' } });
    expect(() => validateConfig({ rules: [rule(), sameContainer] })).toThrow(
      /"raw" and "twin" overlap/,
    );
    const disjoint = rule({
      name: 'out',
      s3: { bucket: 'raw-bucket', prefix: 'out/' },
      azure: { accountUrl: 'https://acct.blob.core.windows.net', container: 'raw', prefix: 'out/' },
    });
    const inOnly = rule({
      azure: { accountUrl: 'https://acct.blob.core.windows.net', container: 'raw', prefix: 'in/' },
    });
    expect(() => validateConfig({ rules: [inOnly, disjoint] })).not.toThrow();
  });

  it('refuses unauthenticated webhooks unless said explicitly', () => {
    expect(() =>
      validateConfig({ rules: [rule()], eventGrid: { auth: { mode: 'none' } } }),
    ).toThrow(ConfigError);
    expect(
      validateConfig({
        rules: [rule()],
        eventGrid: { auth: { mode: 'none', allowUnauthenticated: true } },
      }).eventGrid,
    ).toEqual({ auth: { mode: 'none', allowUnauthenticated: true } });
  });

  it("takes Event Grid's application ids of another cloud, and refuses one that is no GUID", () => {
    const entra = (eventGridAppIds: string[]) => ({
      rules: [rule()],
      eventGrid: { auth: { mode: 'entra', tenantId: 't', audience: 'api://a', eventGridAppIds } },
    });
    const china = '11111111-2222-3333-4444-555555555555';
    expect(validateConfig(entra([china])).eventGrid?.auth).toMatchObject({
      eventGridAppIds: [china],
    });
    expect(() => validateConfig(entra(['event-grid']))).toThrow(/eventGridAppIds.*GUID/);
  });
});

describe('Function: loadConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 's3az-config-'));

  it('reads YAML and JSON files', async () => {
    writeFileSync(
      join(dir, 'a.yaml'),
      'rules:\n  - name: raw\n    s3: { bucket: raw-bucket }\n    azure: { accountUrl: "https://acct.blob.core.windows.net", container: raw }\n',
    );
    writeFileSync(join(dir, 'a.json'), JSON.stringify({ rules: [rule()] }));
    expect((await loadConfig(join(dir, 'a.yaml'))).rules[0]?.name).toBe('raw');
    expect((await loadConfig(join(dir, 'a.json'))).rules[0]?.s3.prefix).toBe('in/');
  });

  it('names a missing or malformed file', async () => {
    await expect(loadConfig(join(dir, 'missing.yaml'))).rejects.toThrow(
      /cannot read the configuration file/,
    );
    writeFileSync(join(dir, 'bad.yaml'), 'rules: [\n');
    await expect(loadConfig(join(dir, 'bad.yaml'))).rejects.toThrow(/is not valid YAML/);
  });
});

describe('Schema: JSON Schema for editors', () => {
  it('is generated from the same schema and refuses unknown keys', () => {
    const schema = z.toJSONSchema(configSchema, { io: 'input' }) as {
      additionalProperties?: boolean;
    };
    expect(schema.additionalProperties).toBe(false);
  });
});

describe('File: replication.schema.json', () => {
  it('is up to date with the schema (run npm run schema after changing it)', async () => {
    const { readFileSync } = await import('node:fs');
    const published = JSON.parse(
      readFileSync(new URL('../../src/config/replication.schema.json', import.meta.url), 'utf8'),
    ) as Record<string, unknown>;
    const { title: _title, ...rest } = published;
    expect(rest).toEqual(JSON.parse(JSON.stringify(z.toJSONSchema(configSchema, { io: 'input' }))));
  });
});
