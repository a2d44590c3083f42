// Issue 11, item 2: keys, scopes and fingerprints are compared as exact strings.
// node-postgres encodes a lone surrogate as U+FFFD and Postgres text cannot hold
// NUL, so such strings would be altered on the way in: two different tenants (or
// keys) would become one row. They are refused before any query.
import { describe, expect, it } from 'vitest';
import {
  IdempotencyKeyInvalidError,
  IdempotencyOptionsInvalidError,
  lookupReplay,
  withIdempotency,
  type IdempotencyOptions,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

/** Runs a call that writes a charge; returns its result or error, and checks it changed nothing. */
async function refusedWithoutChange(key: string, options: IdempotencyOptions) {
  const keysBefore = await keyRows(t.pool);
  const chargesBefore = await count(t.pool, 'charges');
  const error = await withIdempotency(t.db, key, async (tx) => insertCharge(tx, 'ill-formed', 1), options).catch((e: unknown) => e);
  expect(await keyRows(t.pool)).toEqual(keysBefore);
  expect(await count(t.pool, 'charges')).toBe(chargesBefore);
  return error;
}

describe('strings the driver or Postgres would alter', () => {
  it.each([
    ['a lone high surrogate', 'key-\ud800'],
    ['a lone low surrogate', 'key-\udc00'],
    ['a low surrogate before a high one', 'key-\udc00\ud800'],
  ])('refuses a key with %s as IDEMPOTENCY_KEY_INVALID, touching nothing', async (_what, key) => {
    const error = await refusedWithoutChange(key, { scope: 'alice' });
    expect(error).toBeInstanceOf(IdempotencyKeyInvalidError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_KEY_INVALID', status: 400 });
  });

  it.each([
    ['a scope with a lone surrogate', { scope: 'tenant-\ud800' }],
    ['a precomputed fingerprint with a lone surrogate', { fingerprint: 'sha256:\udfff' }],
    ['a precomputed fingerprint with a NUL', { fingerprint: 'sha256:a\u0000b' }],
  ])('refuses %s as IDEMPOTENCY_OPTIONS_INVALID, touching nothing', async (_what, options) => {
    const error = await refusedWithoutChange('well-formed-key', options);
    expect(error).toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
  });

  it('never lets two scopes that differ only by a lone surrogate share a row', async () => {
    const first = await withIdempotency(t.db, 'shared', async () => 'tenant A', { scope: 'tenant' }).catch((e: unknown) => e);
    expect(first).toBe('tenant A');
    for (const scope of ['tenant\ud800', 'tenant\udbff', 'tenant\udc00']) {
      const other = await withIdempotency(t.db, 'shared', async () => `tenant ${scope}`, { scope }).catch((e: unknown) => e);
      expect(other).toBeInstanceOf(IdempotencyOptionsInvalidError);
    }
    expect((await keyRows(t.pool)).filter((k) => k.key === 'shared')).toEqual([expect.objectContaining({ scope: 'tenant' })]);
    // Not even the read-only lookup sends such a scope.
    await expect(lookupReplay(t.db, 'shared', { scope: 'tenant\ud800' })).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
  });

  it('never lets two keys that differ only by a lone surrogate share a row', async () => {
    for (const key of ['pay\ud800', 'pay\udfff']) {
      const error = await withIdempotency(t.db, key, async () => key, { scope: 'alice' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdempotencyKeyInvalidError);
    }
    expect((await keyRows(t.pool)).filter((k) => k.key.startsWith('pay'))).toEqual([]);
  });

  it('keeps well-formed astral characters (a surrogate pair) exact', async () => {
    const key = 'order-\u{1F600}';
    expect(await withIdempotency(t.db, key, async () => 'ok', { scope: 'tenant-\u{1F600}', fingerprint: 'fp-\u{1F600}' })).toBe('ok');
    expect((await keyRows(t.pool)).filter((k) => k.key === key)).toEqual([
      expect.objectContaining({ scope: 'tenant-\u{1F600}', fingerprint: 'fp-\u{1F600}' }),
    ]);
  });
});
