import { describe, expect, it } from 'vitest';
import { checkKeyFor, joinKey, relativeKey } from '../../src/core/keys.ts';
import { UnrepresentableError } from '../../src/errors.ts';

describe('Function: checkKeyFor', () => {
  it.each([
    'plain.txt',
    'with spaces/a file.txt',
    'a+b/c+d',
    '100%/x',
    'données/日本語 🎉',
    `${'deep/'.repeat(100)}leaf`,
    'k'.repeat(1024),
  ])('accepts %s on both stores', (key) => {
    expect(() => checkKeyFor('s3', key)).not.toThrow();
    expect(() => checkKeyFor('azure', key)).not.toThrow();
  });

  it.each([
    ['a name ending in /', 'folder/', /ends in "\/"/],
    ['a name ending in .', 'file.', /ends in "\."/],
    ['a backslash', 'a\\b', /contains "\\"/],
    ['a . segment', 'a/./b', /path segment/],
    ['a .. segment', 'a/../b', /path segment/],
    ['1,025 characters', 'k'.repeat(1025), /at most 1024/],
  ])('refuses %s for Azure', (_label, key, message) => {
    expect(() => checkKeyFor('azure', key)).toThrow(UnrepresentableError);
    expect(() => checkKeyFor('azure', key)).toThrow(message);
  });

  it('counts S3 keys in UTF-8 bytes', () => {
    const key = 'é'.repeat(513); // 1,026 bytes
    expect(() => checkKeyFor('s3', key)).toThrow(/1026 UTF-8 bytes/);
    expect(() => checkKeyFor('azure', key)).not.toThrow();
    expect(() => checkKeyFor('s3', 'folder/')).not.toThrow();
  });

  it('refuses an empty key on both', () => {
    expect(() => checkKeyFor('s3', '')).toThrow(UnrepresentableError);
    expect(() => checkKeyFor('azure', '')).toThrow(UnrepresentableError);
  });
});

describe('Function: joinKey / relativeKey', () => {
  it.each([
    ['', 'a/b', 'a/b'],
    ['in/', 'a/b', 'in/a/b'],
    ['in', 'a/b', 'in/a/b'],
  ])('joins %j and %j', (prefix, relative, joined) => {
    expect(joinKey(prefix, relative)).toBe(joined);
  });

  it('strips a prefix and refuses a key outside it', () => {
    expect(relativeKey('tree/', 'tree/sub/c')).toBe('sub/c');
    expect(() => relativeKey('tree/', 'other/c')).toThrow(/not under/);
  });
});
