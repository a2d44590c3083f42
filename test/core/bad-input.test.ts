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

  // What JSON.stringify would silently write as {} (or null), so that a replay
  // would not be what fn returned: refused, and typed never by Jsonified.
  class Receipt {
    constructor(readonly amount: number) {}
    get total() {
      return this.amount * 2;
    }
  }
  it.each([
    ['a Map', () => ({ byId: new Map([[1, 'a']]) })],
    ['a Set', () => ({ tags: new Set(['a']) })],
    ['a WeakMap', () => [new WeakMap()]],
    ['a WeakSet', () => ({ seen: new WeakSet() })],
    ['an Error', () => ({ failure: new Error('card declined') })],
    ['an Error subclass, as the whole result', () => new RangeError('too many')],
    ['a RegExp', () => ({ pattern: /a+/g })],
    ['a Uint8Array', () => ({ bytes: new Uint8Array([1, 2]) })],
    ['a Float64Array', () => ({ samples: new Float64Array([0.5]) })],
    ['an ArrayBuffer', () => ({ raw: new ArrayBuffer(4) })],
    ['a SharedArrayBuffer', () => ({ raw: new SharedArrayBuffer(4) })],
    ['a DataView', () => ({ view: new DataView(new ArrayBuffer(4)) })],
    ['a Promise', () => ({ pending: Promise.resolve(1) })],
    ['a Map nested in an array', () => ({ rows: [{ id: 1, extra: new Map() }] })],
    ['a Map returned by toJSON', () => ({ toJSON: () => new Map() })],
    ['an invalid Date (JSON writes null)', () => ({ paidAt: new Date('not a date') })],
    ['a class instance whose value is a getter (JSON leaves it out)', () => new Receipt(5)],
    ['a FormData (its entries are internal: JSON writes {})', () => ({ form: new FormData() })],
    ['an iterator (JSON writes {})', () => ({ ids: new Map([[1, 'a']]).keys() })],
  ])('rejects %s as IDEMPOTENCY_RESULT_INVALID and rolls fn back', async (_name, make) => {
    const error = await rejectsWithoutChange('result-lossy', async () => make());
    expect(error).toBeInstanceOf(IdempotencyResultInvalidError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_RESULT_INVALID', retryable: false });
  });

  it('stores a zero interval as node-postgres reads it (a class instance with no own members, not iterable) as {}, as JSON writes it', async () => {
    const [row] = (await t.pool.query<{ waited: object }>(`select interval '0 seconds' as waited`)).rows;
    expect(Object.keys(row!.waited)).toEqual([]);
    expect(await withIdempotency(t.db, 'result-zero-interval', async () => ({ waited: row!.waited }))).toEqual({ waited: {} });
  });

  it('stores what JSON keeps: own toJSON (Date, Buffer, an Error that defines one), class instances with data fields, null', async () => {
    class Money {
      constructor(
        readonly amount: number,
        readonly currency: string,
      ) {}
      format() {
        return `${this.amount} ${this.currency}`;
      }
    }
    class DeclinedError extends Error {
      toJSON() {
        return { code: 'declined' };
      }
    }
    const result = {
      paidAt: new Date('2025-06-02T18:25:29.158Z'),
      bytes: Buffer.from([1, 2]),
      failure: new DeclinedError('card declined'),
      price: new Money(1999, 'EUR'),
      looksLikeAnError: { name: 'TypeError', message: 'plain data' },
      none: null,
    };
    const stored = {
      paidAt: '2025-06-02T18:25:29.158Z',
      bytes: { type: 'Buffer', data: [1, 2] },
      failure: { code: 'declined' },
      price: { amount: 1999, currency: 'EUR' },
      looksLikeAnError: { name: 'TypeError', message: 'plain data' },
      none: null,
    };
    expect(await withIdempotency(t.db, 'result-kept', async () => result)).toEqual(stored);
    expect(await withIdempotency(t.db, 'result-kept', async () => 'not run')).toEqual(stored);
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
