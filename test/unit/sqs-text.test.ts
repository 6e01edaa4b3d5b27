import { describe, expect, it } from 'vitest';
import { sqsBody, sqsText } from '../../src/queue/sqs.ts';

// What SQS takes: #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF.
const SQS_TAKES = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;

describe('Function: sqsText', () => {
  it('replaces what SQS refuses in an attribute, and keeps everything else', () => {
    const hostile = `key "a\u0000b\u0001\uFFFE\uFFFF\uD800" 😀`;
    expect(sqsText(hostile)).toBe('key "a\uFFFDb\uFFFD\uFFFD\uFFFD\uFFFD" 😀');
    expect(SQS_TAKES.test(sqsText(hostile))).toBe(true);
  });

  it('mends an error cut through a surrogate pair', () => {
    const cut = `${'a'.repeat(999)}😀`.slice(0, 1000);
    expect(SQS_TAKES.test(cut)).toBe(false);
    expect(SQS_TAKES.test(sqsText(cut))).toBe(true);
  });
});

describe('Function: sqsBody', () => {
  it('escapes U+FFFE and U+FFFF in a JSON body, which then parses to the same value', () => {
    const value = { key: 'x\uFFFEy\uFFFF', control: '\u0001', pair: '😀' };
    const body = sqsBody(JSON.stringify(value));
    expect(SQS_TAKES.test(body)).toBe(true);
    expect(JSON.parse(body)).toEqual(value);
  });
});
