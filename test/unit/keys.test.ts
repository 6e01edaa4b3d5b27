import { describe, expect, it } from 'vitest';
import { checkAddressable, checkKeyFor, joinKey, relativeKey } from '../../src/core/keys.ts';
import { UnrepresentableError } from '../../src/errors.ts';

describe('Function: checkKeyFor', () => {
  it.each([
    'plain.txt',
    'a',
    'with spaces/a file.txt',
    'a+b/c+d',
    '100%/x%20y',
    'données/日本語 🎉',
    `${'deep/'.repeat(100)}leaf`,
    '.hidden/..config/file..name',
    'a/.../b',
    'k'.repeat(1024),
  ])('accepts %s on both stores', (key) => {
    expect(() => checkKeyFor('s3', key)).not.toThrow();
    expect(() => checkKeyFor('azure', key)).not.toThrow();
  });

  it.each([
    ['a name ending in /', 'folder/', /ends in "\/", which Azure trims/],
    ['a name ending in .', 'file.', /ends in "\.", which Azure trims/],
    ['a name ending in /.', 'folder/.', /ends in "\."/],
    ['a name that is ..', '..', /ends in "\."/],
    ['a backslash', 'a\\b', /contains "\\", which Azure turns into "\/"/],
    ['a . segment', 'a/./b', /"\." or "\.\." path segment/],
    ['a .. segment', 'a/../b', /"\." or "\.\." path segment/],
    ['a leading . segment', './b', /path segment/],
    ['1,025 characters', 'k'.repeat(1025), /1025 characters; Azure blob names are at most 1024/],
  ])('refuses %s on Azure only', (_label, key, message) => {
    expect(() => checkKeyFor('azure', key)).toThrow(UnrepresentableError);
    expect(() => checkKeyFor('azure', key)).toThrow(message);
    if (Buffer.byteLength(key) <= 1024) expect(() => checkKeyFor('s3', key)).not.toThrow();
  });

  it.each([
    ['1,024 bytes', 'é'.repeat(512), true],
    ['1,026 bytes in 513 characters', 'é'.repeat(513), false],
    ['1,025 ASCII bytes', 'k'.repeat(1025), false],
  ])('counts S3 keys in UTF-8 bytes: %s', (_label, key, accepted) => {
    if (accepted) expect(() => checkKeyFor('s3', key)).not.toThrow();
    else expect(() => checkKeyFor('s3', key)).toThrow(/UTF-8 bytes; S3 keys are at most 1024/);
  });

  it('counts Azure names in characters', () => {
    expect(() => checkKeyFor('azure', 'é'.repeat(1024))).not.toThrow();
    expect(() => checkKeyFor('s3', 'é'.repeat(1024))).toThrow(/2048 UTF-8 bytes/);
  });

  it.each([
    ['an empty key', '', /cannot be empty/],
    ['a lone surrogate', 'a\uD800b', /not well-formed Unicode/],
  ])('refuses %s on both stores', (_label, key, message) => {
    for (const side of ['s3', 'azure'] as const) {
      expect(() => checkKeyFor(side, key)).toThrow(UnrepresentableError);
      expect(() => checkKeyFor(side, key)).toThrow(message);
    }
  });

  it('names a long key shortened, without splitting a character', () => {
    // Prepare
    const key = `${'🎉'.repeat(59)}x${'y'.repeat(2000)}`;

    // Act
    let message = '';
    try {
      checkKeyFor('s3', key);
    } catch (error) {
      message = error instanceof Error ? error.message : '';
    }

    // Assess
    expect(message).toContain(`key "${'🎉'.repeat(59)}x…(2060 chars)"`);
    expect(message.length).toBeLessThan(400);
  });
});

describe('Function: checkAddressable', () => {
  it.each([
    ['azure', './victim', /"\." or "\.\." path segment/],
    ['azure', 'a/b/../../victim', /"\." or "\.\." path segment/],
    ['azure', '../', /"\." or "\.\." path segment/],
    ['s3', '\ud800', /lone surrogate/],
    ['azure', 'a\udfffb', /lone surrogate/],
  ] as const)('refuses %s key %j before any request names another object', (side, key, message) => {
    expect(() => checkAddressable(side, key)).toThrow(UnrepresentableError);
    expect(() => checkAddressable(side, key)).toThrow(message);
  });

  it('lets through what only a write would refuse (a folder marker, a trailing dot)', () => {
    expect(() => checkAddressable('azure', 'folder/')).not.toThrow();
    expect(() => checkAddressable('azure', 'name.')).not.toThrow();
    expect(() => checkAddressable('s3', 'a/../b')).not.toThrow();
  });
});

describe('Function: joinKey / relativeKey', () => {
  it.each([
    ['', 'a/b', 'a/b'],
    ['in/', 'a/b', 'in/a/b'],
    ['in', 'a/b', 'in/a/b'],
    ['deep/er/', 'c', 'deep/er/c'],
  ])('joins %j and %j as %j', (prefix, relative, joined) => {
    expect(joinKey(prefix, relative)).toBe(joined);
  });

  it.each([
    ['', 'a/b', 'a/b'],
    ['tree/', 'tree/sub/c', 'sub/c'],
    ['tree/', 'tree/x y+z%', 'x y+z%'],
  ])('strips %j from %j, and joins it back', (prefix, key, relative) => {
    expect(relativeKey(prefix, key)).toBe(relative);
    expect(joinKey(prefix, relativeKey(prefix, key))).toBe(key);
  });

  it('refuses a key outside the prefix', () => {
    expect(() => relativeKey('tree/', 'other/c')).toThrow(/"other\/c" is not under "tree\/"/);
  });
});
