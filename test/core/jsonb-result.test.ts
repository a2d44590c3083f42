// Issue 11, item 6: results that JSON.stringify accepts but jsonb refuses (NUL in
// an object key, lone surrogates in keys or values) used to reach Postgres and
// fail there as untyped driver errors (SQLSTATE 22P05, 22P02), which callers
// took for a retryable fault. They are IDEMPOTENCY_RESULT_INVALID, checked
// before the store, never retryable, and roll fn back.
import { describe, expect, it } from 'vitest';
import { IdempotencyResultInvalidError, withIdempotency } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

describe('results jsonb cannot hold', () => {
  it.each([
    ['a NUL in an object key', () => ({ 'a\u0000b': 1 })],
    ['a NUL in a nested object key', () => ({ list: [{ ['\u0000']: true }] })],
    ['a lone surrogate in a string', () => ({ name: 'caf\ud800' })],
    ['a lone surrogate in an object key', () => ({ ['k\udc00']: 1 })],
    ['a lone surrogate as the whole result', () => '\udfff'],
  ])('refuses %s as IDEMPOTENCY_RESULT_INVALID, not retryable, and rolls fn back', async (_what, make) => {
    const keysBefore = await keyRows(t.pool);
    const error = await withIdempotency(
      t.db,
      'jsonb-refuses',
      async (tx) => {
        await insertCharge(tx, 'jsonb-refuses', 1);
        return make();
      },
      { scope: 'alice' },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyResultInvalidError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_RESULT_INVALID', retryable: false });
    expect(await keyRows(t.pool)).toEqual(keysBefore);
    expect(await count(t.pool, 'charges', "ref = 'jsonb-refuses'")).toBe(0);
  });

  it('stores well-formed astral characters and escaped controls exactly', async () => {
    const value = { 'k\u{1F600}': 'v\u{1F600}', tab: 'a\tb', bell: '\u0007' };
    expect(await withIdempotency(t.db, 'jsonb-ok', async () => value, { scope: 'alice' })).toEqual(value);
    expect(await withIdempotency(t.db, 'jsonb-ok', async () => 'not run', { scope: 'alice' })).toEqual(value);
  });
});
