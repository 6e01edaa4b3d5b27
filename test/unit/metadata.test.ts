import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildNativeMetadata,
  fromNative,
  MARKER_NAMES,
  type ReplicaMarker,
  readReplicaMarker,
  sourceDigest,
  toNative,
  userMetadataOf,
} from '../../src/core/metadata.ts';
import { UnrepresentableError } from '../../src/errors.ts';
import type { Side } from '../../src/stores/object-store.ts';

/** A C# identifier: what Azure accepts as a metadata name. */
const AZURE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** An HTTP token, lowercase: what S3 accepts and returns as a metadata name. */
const S3_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
const LEGAL: Record<Side, RegExp> = { s3: S3_NAME, azure: AZURE_NAME };
const OTHER: Record<Side, Side> = { s3: 'azure', azure: 's3' };

const fromS3: ReplicaMarker = {
  origin: 's3',
  sourceEtag: '"d41d8cd98f00b204e9800998ecf8427e"',
  sourceLastModified: '2026-11-22T10:00:00.000Z',
};
const fromAzure: ReplicaMarker = {
  origin: 'azure',
  sourceEtag: '"0x8DCB2F3C4D5E6F7"',
  sourceLastModified: '2026-11-22T10:00:01.000Z',
  sourceSequencer: '00000000000000000000000000005A3F0000000000000B1C',
  rule: 'raw-data',
  source: 'container/dir/a%20b.csv',
  size: 1234,
  contentMd5: '1B2M2Y8AsgTpgAmY7PhCfg==',
};
const MARKER: Record<Side, ReplicaMarker> = { s3: fromS3, azure: fromAzure };

/** What a store hands back for what was written: S3 lowercases names, Azure keeps them. */
function stored(side: Side, native: Record<string, string>): Record<string, string> {
  if (side === 'azure') return Object.fromEntries(Object.entries(native));
  return Object.fromEntries(
    Object.entries(native).map(([name, value]) => [name.toLowerCase(), value]),
  );
}

/**
 * Replicates an object's metadata as the copy engine does: read the user metadata of what is
 * stored on `from`, write it with a marker on the other side, and return what that side stores.
 */
function replicate(from: Side, native: Record<string, string>): Record<string, string> {
  const to = OTHER[from];
  return stored(to, buildNativeMetadata(to, userMetadataOf(from, native), MARKER[from]));
}

function expectLegalOn(side: Side, native: Record<string, string>): void {
  for (const name of Object.keys(native)) expect(name).toMatch(LEGAL[side]);
}

describe('Function: toNative', () => {
  it.each([
    { name: 'color', s3: 'color', azure: 'color' },
    { name: 'mykey', s3: 'mykey', azure: 'mykey' },
    { name: 'my_key', s3: 'my_key', azure: 'my_key' },
    { name: '_x', s3: '_x', azure: '_x' },
    { name: '__proto__', s3: '__proto__', azure: '__proto__' },
    { name: 'my-key', s3: 'my-key', azure: 's3azx_my_2dkey' },
    { name: 'my.key', s3: 'my.key', azure: 's3azx_my_2ekey' },
    { name: '9lives', s3: '9lives', azure: 's3azx_9lives' },
    { name: 'MyKey', s3: 's3azx__4dy_4bey', azure: 'MyKey' },
    { name: 'Color', s3: 's3azx__43olor', azure: 'Color' },
    { name: '_Private', s3: 's3azx__5f_50rivate', azure: '_Private' },
    { name: 'a+b', s3: 's3azx_a_2bb', azure: 's3azx_a_2bb' },
    { name: 's3azx_fake', s3: 's3azx_s3azx_5ffake', azure: 's3azx_s3azx_5ffake' },
    { name: 's3az_origin', s3: 's3azx_s3az_5forigin', azure: 's3azx_s3az_5forigin' },
    { name: 'S3AZ_thing', s3: 's3azx__533_41_5a_5fthing', azure: 's3azx__533_41_5a_5fthing' },
    { name: 's3azure', s3: 's3azx_s3azure', azure: 's3azx_s3azure' },
  ])('writes $name as $s3 on S3 and $azure on Azure', ({ name, s3, azure }) => {
    // Act
    const onS3 = toNative('s3', { [name]: 'v' });
    const onAzure = toNative('azure', { [name]: 'v' });

    // Assess
    expect(Object.keys(onS3)).toEqual([s3]);
    expect(Object.keys(onAzure)).toEqual([azure]);
    for (const [side, native] of [
      ['s3', onS3],
      ['azure', onAzure],
    ] as const) {
      expectLegalOn(side, stored(side, native));
      for (const nativeName of Object.keys(native).filter((n) => n !== name)) {
        expect(nativeName).toMatch(S3_NAME);
        expect(nativeName).toMatch(AZURE_NAME);
      }
      expect(fromNative(side, stored(side, native))).toEqual({ [name]: 'v' });
    }
  });

  it('escapes to names legal on both stores, for any name either store accepts', () => {
    const names = fc.oneof(
      fc.stringMatching(/^[a-z0-9!#$%&'*+.^_`|~-]{1,24}$/),
      fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,23}$/),
    );
    fc.assert(
      fc.property(names, fc.constantFrom<Side>('s3', 'azure'), (name, side) => {
        // Act
        const native = stored(side, toNative(side, { [name]: 'v' }));

        // Assess
        for (const nativeName of Object.keys(native)) {
          expect(nativeName).toMatch(side === 's3' ? S3_NAME : AZURE_NAME);
          if (nativeName !== name) {
            expect(nativeName).toMatch(S3_NAME);
            expect(nativeName).toMatch(AZURE_NAME);
          }
        }
        expect(fromNative(side, native)).toEqual({ [name]: 'v' });
      }),
    );
  });

  it('refuses two names that would be one name on the destination', () => {
    expect(() => toNative('azure', { Color: 'a', color: 'b' })).toThrow(
      /"Color" and "color" would be the same name on Azure/,
    );
  });

  it.each([
    ['an empty name', '', /cannot be empty/],
    ['a non-ASCII name', 'café', /"café" has a character \(U\+00E9\)/],
    ['a name with a space', 'my key', /"my key" has a character \(U\+0020\)/],
  ])('refuses %s', (_label, name, message) => {
    for (const side of ['s3', 'azure'] as const) {
      expect(() => toNative(side, { [name]: 'v' })).toThrow(UnrepresentableError);
      expect(() => toNative(side, { [name]: 'v' })).toThrow(message);
    }
  });

  it.each([
    ['a non-ASCII character', 'café', /U\+00E9 at position 3/],
    ['an emoji', 'ok 🎉', /U\+1F389 at position 3/],
    ['a newline', 'a\nb', /U\+000A/],
    ['a tab', 'a\tb', /U\+0009/],
    ['a leading space', ' padded', /leading or trailing spaces/],
    ['a trailing space', 'padded ', /leading or trailing spaces/],
  ])('refuses a value with %s on both stores, naming the key', (_label, value, reason) => {
    for (const side of ['s3', 'azure'] as const) {
      const act = () => toNative(side, { note: value });
      expect(act).toThrow(UnrepresentableError);
      expect(act).toThrow(/metadata "note" has a value/);
      expect(act).toThrow(reason);
    }
  });

  it('carries values with inner spaces and punctuation unchanged', () => {
    const value = 'a b  c "quoted" ~!@#$%^&*()';
    expect(toNative('azure', { note: value })).toEqual({ note: value });
    expect(toNative('s3', { note: value })).toEqual({ note: value });
  });
});

describe('Function: fromNative', () => {
  it('leaves the marker out and takes names that are not escapes as they are', () => {
    // Act
    const logical = fromNative('azure', {
      ...buildNativeMetadata('azure', {}, fromS3),
      s3azx_: 'no body',
      s3azx_Bad: 'not canonical',
      s3azx_a_zz: 'bad hex',
      plain: 'p',
    });

    // Assess
    expect(logical).toEqual({
      s3azx_: 'no body',
      s3azx_Bad: 'not canonical',
      s3azx_a_zz: 'bad hex',
      plain: 'p',
    });
  });

  it('refuses two names that read as the same logical name', () => {
    expect(() => fromNative('s3', { my_key: 'a', s3azx_my_5fkey: 'b' })).toThrow(
      /both read as "my_key"/,
    );
  });
});

describe('Function: userMetadataOf', () => {
  it.each([
    {
      side: 's3',
      names: [
        'color',
        'my-key',
        'my.key',
        'my_key',
        'mykey',
        '_x',
        '9lives',
        'a+b',
        'a--b',
        'x_2dy',
        's3azx_fake',
        's3az_origin',
        's3az_custom',
        's3azx__4d',
      ],
    },
    {
      side: 'azure',
      names: [
        'Color',
        'MyKey',
        'my_key',
        '_x',
        '_Private',
        'UPPER_CASE',
        'abc123',
        '__proto__',
        'S3AZ_thing',
        's3azx_fake',
        's3az_origin',
        'S3az_Source_Etag',
        's3azx__4d',
      ],
    },
  ] as const)(
    'round trips user-written $side names through the other store and back',
    ({ side, names }) => {
      for (const name of names) {
        // Prepare: an object a user wrote on `side`, as that store returns it.
        const original = { [name]: 'v', other: 'w' };

        // Act
        const there = replicate(side, original);
        const back = replicate(OTHER[side], there);

        // Assess
        expectLegalOn(OTHER[side], there);
        expect(userMetadataOf(OTHER[side], there)).toEqual(original);
        expect(readReplicaMarker(there)).toEqual(MARKER[side]);
        expect(userMetadataOf(side, back)).toEqual(original);
        expect(readReplicaMarker(back)).toEqual(MARKER[OTHER[side]]);
      }
    },
  );

  it('keeps marker-like names on an object a user wrote, when they are not a complete marker', () => {
    // Prepare
    const native = { s3az_origin: 'mine', s3az_source_etag: 'x', s3azx_my_2dkey: 'literal' };

    // Act
    const logical = userMetadataOf('s3', native);

    // Assess
    expect(readReplicaMarker(native)).toBeUndefined();
    expect(logical).toEqual(native);
  });

  it('reads the metadata of a replica without its marker', () => {
    // Prepare
    const native = stored(
      's3',
      buildNativeMetadata('s3', { Color: 'blue', 'my-key': 'x' }, fromAzure),
    );

    // Act
    const logical = userMetadataOf('s3', native);

    // Assess
    expect(logical).toEqual({ Color: 'blue', 'my-key': 'x' });
  });
});

describe('Function: buildNativeMetadata / readReplicaMarker', () => {
  it.each([
    { side: 's3', marker: fromAzure },
    { side: 'azure', marker: fromS3 },
  ] as const)('writes a marker that reads back on $side', ({ side, marker }) => {
    // Act
    const native = buildNativeMetadata(side, { color: 'blue' }, marker);

    // Assess
    expect(readReplicaMarker(stored(side, native))).toEqual(marker);
    expect(userMetadataOf(side, stored(side, native))).toEqual({ color: 'blue' });
    const markerNames = Object.keys(native).filter((name) => name.startsWith('s3az_'));
    expect(markerNames.sort()).toEqual(
      Object.entries(MARKER_NAMES)
        .filter(([field]) => marker[field as keyof ReplicaMarker] !== undefined)
        .map(([, name]) => name)
        .sort(),
    );
    for (const name of markerNames) {
      expect(name).toMatch(S3_NAME);
      expect(name).toMatch(AZURE_NAME);
    }
  });

  it('still fits what fitted before the marker named its source: digest first, then the earlier form', () => {
    const full: ReplicaMarker = {
      ...fromAzure,
      source: `container/${'k'.repeat(500)}`,
      replicatedAt: '2026-11-22T10:00:02.000Z',
    };
    // User metadata that fitted on S3 with the earlier three-entry marker.
    const near = { note: 'x'.repeat(1_800) };
    const tight = buildNativeMetadata('s3', near, full);
    expect(readReplicaMarker(tight)).toMatchObject({
      origin: 'azure',
      sourceEtag: fromAzure.sourceEtag,
    });
    const total = Object.entries(tight).reduce((sum, [n, v]) => sum + n.length + v.length, 0);
    expect(total).toBeLessThanOrEqual(2048);
    // A little more room: the source is named by its digest.
    const roomier = buildNativeMetadata('s3', { note: 'x'.repeat(1_300) }, full);
    expect(readReplicaMarker(roomier)?.source).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(readReplicaMarker(roomier)?.source).toBe(sourceDigest('container', 'k'.repeat(500)));
  });

  it('reads a marker whatever the case of its names', () => {
    expect(
      readReplicaMarker({
        S3AZ_ORIGIN: 'azure',
        S3az_Source_Etag: '"e"',
        s3az_source_LAST_modified: '2026-11-22T10:00:00.000Z',
      }),
    ).toEqual({
      origin: 'azure',
      sourceEtag: '"e"',
      sourceLastModified: '2026-11-22T10:00:00.000Z',
    });
  });

  it.each([
    ['no marker', { color: 'blue' }],
    [
      'an unknown origin',
      { s3az_origin: 'gcs', s3az_source_etag: 'x', s3az_source_last_modified: 'y' },
    ],
    ['no eTag', { s3az_origin: 's3', s3az_source_last_modified: 'y' }],
    ['no last-modified', { s3az_origin: 's3', s3az_source_etag: 'x' }],
    ['an empty eTag', { s3az_origin: 's3', s3az_source_etag: '', s3az_source_last_modified: 'y' }],
  ])('finds no marker with %s', (_label, native) => {
    expect(readReplicaMarker(native)).toBeUndefined();
  });

  it.each([
    { side: 's3', limit: 2048 },
    { side: 'azure', limit: 8192 },
  ] as const)(
    'takes exactly the $side limit of $limit bytes, and refuses one byte more',
    ({ side, limit }) => {
      // Prepare: fill a value up to the limit, counting names, values and the marker in its
      // smallest (earlier) form, which is what the marker shrinks to near the limit.
      const { origin, sourceEtag, sourceLastModified } = MARKER[OTHER[side]];
      const base = buildNativeMetadata(
        side,
        { big: '' },
        { origin, sourceEtag, sourceLastModified },
      );
      const used = Object.entries(base).reduce(
        (sum, [name, value]) => sum + name.length + value.length,
        0,
      );
      const fits = { big: 'v'.repeat(limit - used) };
      const over = { big: 'v'.repeat(limit - used + 1) };

      // Act
      const act = () => buildNativeMetadata(side, over, MARKER[OTHER[side]]);

      // Assess
      const fitted = buildNativeMetadata(side, fits, MARKER[OTHER[side]]);
      expect(fitted.big).toBe(fits.big);
      expect(readReplicaMarker(fitted)).toEqual({ origin, sourceEtag, sourceLastModified });
      expect(act).toThrow(UnrepresentableError);
      expect(act).toThrow(`would take ${limit + 1} bytes`);
      expect(act).toThrow(`limit of ${limit}`);
      expect(act).toThrow('largest entry is "big"');
    },
  );

  it('counts escaped names at their escaped length', () => {
    // Prepare: on S3 each uppercase letter costs three bytes (1,206 + 800 + the marker > 2,048;
    // unescaped it would be 1,200 + the marker).
    const name = 'A'.repeat(400);

    // Act
    const act = () => buildNativeMetadata('s3', { [name]: 'v'.repeat(800) }, fromAzure);

    // Assess
    expect(() => buildNativeMetadata('azure', { [name]: 'v'.repeat(800) }, fromS3)).not.toThrow();
    expect(act).toThrow(/limit of 2048; the largest entry is "s3azx__41/);
  });

  it('refuses a marker value the store cannot carry, naming the marker entry', () => {
    expect(() => buildNativeMetadata('azure', {}, { ...fromS3, sourceEtag: '"é"' })).toThrow(
      /metadata "s3az_source_etag" has a value Azure cannot carry unchanged/,
    );
  });
});
