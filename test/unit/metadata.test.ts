import { describe, expect, it } from 'vitest';
import {
  buildNativeMetadata,
  fromNative,
  readReplicaMarker,
  toNative,
  userMetadataOf,
} from '../../src/core/metadata.ts';
import { UnrepresentableError } from '../../src/errors.ts';

const AZURE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const S3_NAME = /^[a-z0-9_.-]+$/;
const marker = {
  origin: 's3' as const,
  sourceEtag: '"d41d8cd98f00b204e9800998ecf8427e"',
  sourceLastModified: '2026-11-22T10:00:00.000Z',
};

/** What S3 does to names: it lowercases them. */
const s3Returns = (native: Record<string, string>) =>
  Object.fromEntries(Object.entries(native).map(([name, value]) => [name.toLowerCase(), value]));

describe('Function: toNative / fromNative', () => {
  it.each(['color', 'my-key', 'my.key', 'my_key', '_x', '9lives', 's3az_custom', 'a--b', 'x_2dy'])(
    'round trips the S3 name %s through Azure',
    (name) => {
      const logical = fromNative('s3', { [name]: 'v' });
      const onAzure = toNative('azure', logical);
      for (const nativeName of Object.keys(onAzure)) expect(nativeName).toMatch(AZURE_NAME);
      const backOnS3 = s3Returns(toNative('s3', fromNative('azure', onAzure)));
      for (const nativeName of Object.keys(backOnS3)) expect(nativeName).toMatch(S3_NAME);
      expect(fromNative('s3', backOnS3)).toEqual({ [name]: 'v' });
    },
  );

  it.each(['Color', 'MyKey', 'my_key', '_Private', 'UPPER_CASE', 'S3AZ_thing', 'abc123'])(
    'round trips the Azure name %s through S3, case included',
    (name) => {
      const onS3 = s3Returns(toNative('s3', fromNative('azure', { [name]: 'v' })));
      for (const nativeName of Object.keys(onS3)) expect(nativeName).toMatch(S3_NAME);
      const backOnAzure = toNative('azure', fromNative('s3', onS3));
      for (const nativeName of Object.keys(backOnAzure)) expect(nativeName).toMatch(AZURE_NAME);
      expect(fromNative('azure', backOnAzure)).toEqual({ [name]: 'v' });
    },
  );

  it('keeps names the destination can carry unchanged', () => {
    expect(toNative('azure', { color: 'blue', my_key: 'x' })).toEqual({
      color: 'blue',
      my_key: 'x',
    });
    expect(toNative('s3', { color: 'blue', 'my-key': 'x' })).toEqual({
      color: 'blue',
      'my-key': 'x',
    });
    expect(toNative('azure', { 'my-key': 'x' })).toEqual({ s3azx_my_2dkey: 'x' });
  });

  it('refuses two names that would be one on the destination', () => {
    expect(() => toNative('azure', { Color: 'a', color: 'b' })).toThrow(/would be the same name/);
  });

  it.each([
    ['non-ASCII', 'café'],
    ['a control character', 'a\nb'],
    ['a leading space', ' padded'],
  ])('refuses a value with %s, naming the key', (_label, value) => {
    expect(() => toNative('azure', { note: value })).toThrow(UnrepresentableError);
    expect(() => toNative('azure', { note: value })).toThrow(/"note"/);
  });
});

describe('Function: buildNativeMetadata / readReplicaMarker', () => {
  it.each(['s3', 'azure'] as const)('writes a marker that reads back on %s', (side) => {
    const native = buildNativeMetadata(
      side,
      { color: 'blue' },
      { ...marker, sourceSequencer: '0A1B' },
    );
    const stored = side === 's3' ? s3Returns(native) : native;
    expect(readReplicaMarker(stored)).toEqual({ ...marker, sourceSequencer: '0A1B' });
    expect(userMetadataOf(side, stored)).toEqual({ color: 'blue' });
    for (const name of Object.keys(native)) {
      expect(name).toMatch(side === 's3' ? S3_NAME : AZURE_NAME);
    }
  });

  it('reads the reserved marker names as marker, never as user metadata', () => {
    expect(userMetadataOf('s3', { s3az_origin: 's3', s3az_custom: 'kept' })).toEqual({
      s3az_custom: 'kept',
    });
  });

  it('finds no marker on an object a user wrote', () => {
    expect(readReplicaMarker({ color: 'blue' })).toBeUndefined();
    expect(
      readReplicaMarker({
        s3az_origin: 'elsewhere',
        s3az_source_etag: 'x',
        s3az_source_last_modified: 'y',
      }),
    ).toBeUndefined();
  });

  it("refuses metadata over S3's 2 KB, naming the limit", () => {
    expect(() => buildNativeMetadata('s3', { big: 'v'.repeat(2000) }, marker)).toThrow(
      /limit of 2048/,
    );
    expect(() => buildNativeMetadata('azure', { big: 'v'.repeat(2000) }, marker)).not.toThrow();
  });

  it("refuses metadata over Azure's 8 KB, naming the limit", () => {
    expect(() => buildNativeMetadata('azure', { big: 'v'.repeat(8200) }, marker)).toThrow(
      /limit of 8192/,
    );
  });
});
