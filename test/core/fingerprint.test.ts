// Issue 11, item 3 (core part): a fingerprint tells two requests apart exactly
// when JSON tells them apart. Every own member counts (`__proto__` too), and a
// value JSON would silently merge with another (NaN and null, a Map and {}) is
// refused, never hashed.
import { describe, expect, it } from 'vitest';
import {
  canonicalJson,
  fingerprintOf,
  IdempotencyKeyReusedError,
  IdempotencyOptionsInvalidError,
  withIdempotency,
  type Fingerprint,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { keyRows } from '../support/fixtures.js';

const t = await testDatabase();

class Money {
  constructor(readonly amount: number) {}
}

describe('canonicalJson', () => {
  it('sorts object members at every depth', () => {
    expect(canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] })).toBe('{"a":[2,{"c":4,"d":3}],"b":1}');
  });

  it('keeps an own __proto__ member, as JSON.parse creates it', () => {
    const parsed = JSON.parse('{"__proto__":{"limit":99999},"a":1}') as Fingerprint;
    expect(canonicalJson(parsed)).toBe('{"__proto__":{"limit":99999},"a":1}');
    expect(fingerprintOf(parsed)).not.toBe(fingerprintOf({ a: 1 }));
  });

  it('keeps objects without a prototype, as querystring parsing creates them', () => {
    const bare = Object.assign(Object.create(null) as Record<string, Fingerprint>, { to: 'alice' });
    expect(canonicalJson(bare)).toBe('{"to":"alice"}');
  });

  it('leaves out members whose value is undefined, as JSON does', () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
  });

  it('tells apart strings that differ only by a lone surrogate', () => {
    expect(fingerprintOf({ name: 'a\ud800' })).not.toBe(fingerprintOf({ name: 'a\udbff' }));
    expect(fingerprintOf({ name: 'a\ud800' })).not.toBe(fingerprintOf({ name: 'a\ufffd' }));
  });

  const sparse: unknown[] = [1];
  sparse[2] = 3;
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  it.each<[string, unknown]>([
    ['NaN', { limit: Number.NaN }],
    ['Infinity', { limit: Infinity }],
    ['-Infinity', [-Infinity]],
    ['a Map', { tags: new Map([['a', 1]]) }],
    ['a Set', { tags: new Set([1]) }],
    ['a Date', { at: new Date(0) }],
    ['an invalid Date', { at: new Date(Number.NaN) }],
    ['a typed array', { bytes: new Uint8Array([1, 2]) }],
    ['a Buffer', Buffer.from('x')],
    ['a class instance', { price: new Money(5) }],
    ['an object with toJSON', { v: { toJSON: () => 'x' } }],
    ['a boxed string', { s: new String('x') }],
    ['undefined in an array', [1, undefined]],
    ['a hole in an array', sparse],
    ['a symbol-keyed member', { [Symbol('s')]: 1 }],
    ['a BigInt', { n: 1n }],
    ['a function', { f: () => 1 }],
    ['a cycle', cyclic],
    ['undefined itself, inside', [undefined]],
  ])('refuses %s as IDEMPOTENCY_OPTIONS_INVALID', (_what, value) => {
    expect(() => canonicalJson(value)).toThrow(IdempotencyOptionsInvalidError);
    expect(() => fingerprintOf(value as Fingerprint)).toThrow(IdempotencyOptionsInvalidError);
  });

  it('walks nesting deeper than the call stack would allow (a 100 kB JSON body can be 50,000 levels deep)', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(canonicalJson(deep)).toBe(`${'['.repeat(100_000)}1${']'.repeat(100_000)}`);
  });

  it('hashes equal values written in another member order alike', () => {
    expect(fingerprintOf({ a: 1, b: [1, { c: 2, d: 3 }] })).toBe(fingerprintOf({ b: [1, { d: 3, c: 2 }], a: 1 }));
  });
});

describe('a fingerprint in withIdempotency', () => {
  it('refuses a reused key whose fingerprint differs only in a __proto__ member', async () => {
    const first = JSON.parse('{"__proto__":{"limit":10}}') as Fingerprint;
    const second = JSON.parse('{"__proto__":{"limit":99999}}') as Fingerprint;
    expect(await withIdempotency(t.db, 'proto', async () => 'first', { scope: 'alice', fingerprint: first })).toBe('first');
    const error = await withIdempotency(t.db, 'proto', async () => 'second', { scope: 'alice', fingerprint: second }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyKeyReusedError);
  });

  it('refuses NaN where null was fingerprinted before: neither replays the other', async () => {
    expect(await withIdempotency(t.db, 'nan', async () => 'first', { scope: 'alice', fingerprint: { limit: null } })).toBe('first');
    const before = await keyRows(t.pool);
    const error = await withIdempotency(t.db, 'nan', async () => 'second', { scope: 'alice', fingerprint: { limit: Number.NaN } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(await keyRows(t.pool)).toEqual(before);
  });
});
