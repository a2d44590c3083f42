import { describe, expect, it } from 'vitest';
import {
  IdempotencyKeyInvalidError,
  IdempotencyOptionsInvalidError,
  IdempotencyResultInvalidError,
  withIdempotency,
  type IdempotencyOptions,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);
await withIdempotency(t.db, 'existing', async () => 'kept');

/** Runs a bad call; returns its error and checks the database did not change. */
async function rejectsWithoutChange(key: unknown, fn: () => Promise<unknown>, options?: IdempotencyOptions) {
  const keysBefore = await keyRows(t.pool);
  const chargesBefore = await count(t.pool, 'charges');
  const error = await withIdempotency(t.db, key as string, async (tx) => {
    await insertCharge(tx, 'bad-input', 1);
    return fn();
  }, options).catch((e: unknown) => e);
  expect(await keyRows(t.pool)).toEqual(keysBefore);
  expect(await count(t.pool, 'charges')).toBe(chargesBefore);
  return error;
}

describe('invalid keys', () => {
  it.each([
    ['empty', ''],
    ['over 255 characters', 'k'.repeat(256)],
    ['a newline', 'abc\ndef'],
    ['a NUL', 'abc\u0000'],
    ['DEL', 'abc\u007f'],
    ['not a string', 42],
    ['undefined', undefined],
  ])('rejects a key with %s as IDEMPOTENCY_KEY_INVALID (400)', async (_name, key) => {
    const error = await rejectsWithoutChange(key, async () => 1);
    expect(error).toBeInstanceOf(IdempotencyKeyInvalidError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_KEY_INVALID', status: 400, retryable: false });
  });

  it('accepts a key of exactly 255 characters', async () => {
    expect(await withIdempotency(t.db, 'k'.repeat(255), async () => 'ok')).toBe('ok');
  });
});

describe('results that cannot be stored', () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  it.each([
    ['a BigInt', () => ({ amount: 10n })],
    ['a cycle', () => cyclic],
    ['NaN', () => ({ rate: Number.NaN })],
    ['Infinity', () => [Infinity]],
    ['a function', () => ({ callback: () => 1 })],
    ['a symbol', () => ({ tag: Symbol('x') })],
    ['a NUL in a string', () => ({ note: 'a\u0000b' })],
    ['more than maxResultBytes', () => ({ blob: 'x'.repeat(2048) })],
  ])('rejects %s as IDEMPOTENCY_RESULT_INVALID and rolls fn back', async (_name, make) => {
    const error = await rejectsWithoutChange('result-invalid', async () => make(), { maxResultBytes: 1024 });
    expect(error).toBeInstanceOf(IdempotencyResultInvalidError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_RESULT_INVALID' });
  });

  it('stores results up to 1 MiB by default and refuses more', async () => {
    const big = 'x'.repeat(1024 * 1024 - 100);
    expect((await withIdempotency(t.db, 'big-ok', async () => big)).length).toBe(big.length);
    const error = await rejectsWithoutChange('too-big', async () => 'x'.repeat(1024 * 1024));
    expect(error).toBeInstanceOf(IdempotencyResultInvalidError);
  });
});

describe('invalid options', () => {
  it.each<[string, IdempotencyOptions]>([
    ['a zero ttl', { ttl: 0 }],
    ['a negative ttl', { ttl: -5 }],
    ['a ttl with an unknown unit', { ttl: '5 weeks' as IdempotencyOptions['ttl'] }],
    ['a NaN ttl', { ttl: Number.NaN }],
    ['a ttl over ten years', { ttl: '4000d' }],
    ['an unknown in-flight policy', { onInFlight: 'queue' as IdempotencyOptions['onInFlight'] }],
    ['a zero waitTimeout', { waitTimeout: 0 }],
    ['a scope with control characters', { scope: 'a\tb' }],
    ['a scope over 255 characters', { scope: 's'.repeat(256) }],
    ['a fingerprint with a BigInt', { fingerprint: { n: 1n } as unknown as IdempotencyOptions['fingerprint'] }],
    ['an empty precomputed fingerprint', { fingerprint: '' }],
    ['a schema that is not an identifier', { schema: 'public; drop table x' }],
    ['a tiny maxResultBytes', { maxResultBytes: 1 }],
    ['negative serializationRetries', { serializationRetries: -1 }],
    ['options that are null', null as unknown as IdempotencyOptions],
    ['lookupFirst that is not a boolean', { lookupFirst: 'yes' as unknown as boolean }],
    ['a read-only transaction (the key has to be written)', { transaction: { accessMode: 'read only' } }],
    ['a schema without the table', { schema: 'no_such_schema' }],
  ])('rejects %s as IDEMPOTENCY_OPTIONS_INVALID', async (_name, options) => {
    const error = await rejectsWithoutChange('options-invalid', async () => 1, options);
    expect(error).toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
  });

  it('rejects an fn that is not a function, and a db that is not a database, before any query', async () => {
    const before = await keyRows(t.pool);
    await expect(withIdempotency(t.db, 'not-fn', 'charge' as never)).rejects.toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
    await expect(withIdempotency({} as never, 'not-db', async () => 1)).rejects.toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
    expect(await keyRows(t.pool)).toEqual(before);
  });

  it("rejects a read-only caller's transaction as IDEMPOTENCY_OPTIONS_INVALID", async () => {
    const error = await t.db.transaction((tx) => withIdempotency(tx, 'read-only', async () => 1), { accessMode: 'read only' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
  });

  it('accepts durations as milliseconds or with units', async () => {
    for (const ttl of [1500, '500ms', '30s', '15m', '24h', '7d'] as const) {
      expect(await withIdempotency(t.db, `ttl-${ttl}`, async () => ttl, { ttl })).toBe(ttl);
    }
  });
});
