import { describe, expect, it } from 'vitest';
import { IdempotencyKeyInvalidError } from '../../src/shared/errors.js';
import { keyFromHeaderLines, parseIdempotencyKey } from '../../src/shared/header.js';

describe('parseIdempotencyKey', () => {
  it.each([
    ['a bare key as Stripe sends it', '8e03978e-40d5-43e8-bc93-6894a57f9324', '8e03978e-40d5-43e8-bc93-6894a57f9324'],
    ['a structured-field string as the IETF draft writes it', '"8e03978e-40d5"', '8e03978e-40d5'],
    ['surrounding whitespace', '  "abc"  ', 'abc'],
    ['escaped quote and backslash', String.raw`"say \"hi\" \\o/"`, 'say "hi" \\o/'],
    ['a bare key with a quote inside', 'ab"c', 'ab"c'],
    ['a comma inside a structured-field string', '"a,b"', 'a,b'],
  ])('reads %s', (_what, header, key) => {
    expect(parseIdempotencyKey(header)).toBe(key);
  });

  it.each([
    ['empty', ''],
    ['blank', '   '],
    ['an empty string', '""'],
    ['unterminated', '"abc'],
    ['a lone quote', '"'],
    ['trailing characters', '"abc" x'],
    ['parameters', '"abc";p=1'],
    ['an unknown escape', String.raw`"a\tb"`],
    ['a dangling backslash', '"abc\\'],
    ['non-ASCII inside quotes', '"caf\u00e9"'],
    ['over 255 characters', 'x'.repeat(256)],
    ['two bare keys a proxy merged into one line', 'k1, k1'],
    ['a bare key with a comma', 'k1,k2'],
    ['two quoted keys merged into one line', '"k1", "k2"'],
  ])('rejects a key that is %s', (_what, header) => {
    expect(() => parseIdempotencyKey(header)).toThrow(IdempotencyKeyInvalidError);
  });
});

describe('keyFromHeaderLines', () => {
  it('is undefined without the header and rejects it sent twice', () => {
    expect(keyFromHeaderLines(undefined)).toBeUndefined();
    expect(keyFromHeaderLines(['"a"'])).toBe('a');
    expect(() => keyFromHeaderLines(['a', 'b'])).toThrow(IdempotencyKeyInvalidError);
  });
});
