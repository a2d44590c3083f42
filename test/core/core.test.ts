import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import {
  IdempotencyKeyReusedError,
  withIdempotency,
  withIdempotencyOutcome,
  lookupReplay,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, keyRows, sleep } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

describe('withIdempotency on a fresh key', () => {
  it('runs fn, stores its result and commits key and effect together', async () => {
    const value = await withIdempotency(t.db, 'fresh-1', (tx) => insertCharge(tx, 'fresh-1', 100));
    expect(value).toMatchObject({ amount: 100 });
    const [row] = (await keyRows(t.pool)).filter((r) => r.key === 'fresh-1');
    expect(row).toMatchObject({ status: 'completed', response: { value } });
    expect(await count(t.pool, 'charges', 'ref = $1', ['fresh-1'])).toBe(1);
  });

  it('sets expires_at from the database clock, ttl after the claim', async () => {
    await withIdempotency(t.db, 'ttl-clock', async () => 1, { ttl: '2h' });
    const { rows } = await t.pool.query<{ seconds: number }>(
      `select extract(epoch from expires_at - created_at)::float8 as seconds from idempotency_keys where key = 'ttl-clock'`,
    );
    expect(rows[0]!.seconds).toBeCloseTo(7200, 0);
  });
});

describe('a completed, live key', () => {
  it('returns the stored value without calling fn, and says it is a replay', async () => {
    let calls = 0;
    const fn = async (tx: Parameters<Parameters<typeof t.db.transaction>[0]>[0]) => {
      calls++;
      return insertCharge(tx, 'replay-1', 7);
    };
    const first = await withIdempotencyOutcome(t.db, 'replay-1', fn);
    const second = await withIdempotencyOutcome(t.db, 'replay-1', fn);
    const third = await t.db.transaction((tx) => withIdempotencyOutcome(tx, 'replay-1', fn));
    expect(calls).toBe(1);
    expect(first.replayed).toBe(false);
    expect(second).toEqual({ value: first.value, replayed: true });
    expect(third).toEqual({ value: first.value, replayed: true });
    expect(await count(t.pool, 'charges', 'ref = $1', ['replay-1'])).toBe(1);
  });

  it('gives the first caller exactly what replays get, key order included', async () => {
    const result = { zeta: 1, a: { long_key: true, b: [3, { y: null, x: 'é' }] } };
    const first = await withIdempotency(t.db, 'same-answer', async () => result);
    const replay = await withIdempotency(t.db, 'same-answer', async () => ({ other: true }));
    expect(replay).toEqual(result);
    expect(JSON.stringify(first)).toBe(JSON.stringify(replay));
  });

  it('replays a void result as undefined and null as null', async () => {
    expect(await withIdempotency(t.db, 'void', async () => undefined)).toBeUndefined();
    expect(await withIdempotencyOutcome(t.db, 'void', async () => 'ran again')).toEqual({ value: undefined, replayed: true });
    expect(await withIdempotency(t.db, 'null', async () => null)).toBeNull();
    expect(await withIdempotency(t.db, 'null', async () => 'ran again')).toBeNull();
  });

  it('is found by lookupReplay with one query and no transaction', async () => {
    await withIdempotency(t.db, 'lookup-1', async () => ({ ok: 1 }), { scope: 's1', fingerprint: { a: 1 } });
    expect(await lookupReplay(t.db, 'lookup-1', { scope: 's1', fingerprint: { a: 1 } })).toEqual({ value: { ok: 1 }, replayed: true });
    expect(await lookupReplay(t.db, 'lookup-1', { scope: 's2', fingerprint: { a: 1 } })).toBeUndefined();
    expect(await lookupReplay(t.db, 'never-used')).toBeUndefined();
    await expect(lookupReplay(t.db, 'lookup-1', { scope: 's1', fingerprint: { a: 2 } })).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
  });

  it('replays through lookupFirst without running fn', async () => {
    let calls = 0;
    const fn = async () => ++calls;
    expect(await withIdempotencyOutcome(t.db, 'lookup-first', fn, { lookupFirst: true })).toEqual({ value: 1, replayed: false });
    expect(await withIdempotencyOutcome(t.db, 'lookup-first', fn, { lookupFirst: true })).toEqual({ value: 1, replayed: true });
    expect(calls).toBe(1);
  });
});

describe('when fn throws', () => {
  it('leaves neither the key nor any write of fn, and a retry runs fn', async () => {
    await expect(
      withIdempotency(t.db, 'throws-1', async (tx) => {
        await insertCharge(tx, 'throws-1', 1);
        throw new Error('card declined by the network');
      }),
    ).rejects.toThrow('card declined');
    expect(await count(t.pool, 'idempotency_keys', 'key = $1', ['throws-1'])).toBe(0);
    expect(await count(t.pool, 'charges', 'ref = $1', ['throws-1'])).toBe(0);

    const retry = await withIdempotencyOutcome(t.db, 'throws-1', (tx) => insertCharge(tx, 'throws-1', 1));
    expect(retry.replayed).toBe(false);
    expect(await count(t.pool, 'charges', 'ref = $1', ['throws-1'])).toBe(1);
  });

  it('rolls back only its savepoint when the caller catches and commits the rest of its transaction', async () => {
    await t.db.transaction(async (tx) => {
      await insertCharge(tx, 'caller-own-write', 2);
      const error = await withIdempotency(tx, 'throws-2', async (inner) => {
        await insertCharge(inner, 'throws-2', 2);
        throw new Error('boom');
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Error);
      await insertCharge(tx, 'caller-after', 2);
    });
    expect(await count(t.pool, 'idempotency_keys', 'key = $1', ['throws-2'])).toBe(0);
    expect(await count(t.pool, 'charges', 'ref = $1', ['throws-2'])).toBe(0);
    expect(await count(t.pool, 'charges', `ref in ('caller-own-write', 'caller-after')`)).toBe(2);

    await t.db.transaction((tx) => withIdempotency(tx, 'throws-2', (inner) => insertCharge(inner, 'throws-2', 2)));
    expect(await count(t.pool, 'charges', 'ref = $1', ['throws-2'])).toBe(1);
    expect(await count(t.pool, 'idempotency_keys', `key = 'throws-2' and status = 'completed'`)).toBe(1);
  });

  it('forgets the key when the caller rolls back its transaction after a successful call', async () => {
    await t.db
      .transaction(async (tx) => {
        await withIdempotency(tx, 'caller-rollback', (inner) => insertCharge(inner, 'caller-rollback', 3));
        throw new Error('caller changes its mind');
      })
      .catch(() => undefined);
    expect(await count(t.pool, 'idempotency_keys', 'key = $1', ['caller-rollback'])).toBe(0);
    expect(await count(t.pool, 'charges', 'ref = $1', ['caller-rollback'])).toBe(0);
  });
});

describe('scopes and fingerprints', () => {
  it('rejects the same key with another fingerprint and changes nothing', async () => {
    await withIdempotency(t.db, 'fp-1', (tx) => insertCharge(tx, 'fp-1', 500), { fingerprint: { amount: 500, currency: 'eur' } });
    const before = await keyRows(t.pool);
    const error = await withIdempotency(t.db, 'fp-1', (tx) => insertCharge(tx, 'fp-1', 900), {
      fingerprint: { amount: 900, currency: 'eur' },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyKeyReusedError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', status: 422 });
    expect(await keyRows(t.pool)).toEqual(before);
    expect(await count(t.pool, 'charges', 'ref = $1', ['fp-1'])).toBe(1);
  });

  it('hashes fingerprints canonically, so key order does not matter', async () => {
    await withIdempotency(t.db, 'fp-2', async () => 'first', { fingerprint: { currency: 'eur', amount: 500 } });
    expect(await withIdempotency(t.db, 'fp-2', async () => 'second', { fingerprint: { amount: 500, currency: 'eur' } })).toBe('first');
  });

  it('runs the same key independently in another scope, and never hands one scope the other\'s value', async () => {
    const a = await withIdempotency(t.db, 'shared-key', (tx) => insertCharge(tx, 'scope-a', 1), { scope: 'tenant-a' });
    const b = await withIdempotency(t.db, 'shared-key', (tx) => insertCharge(tx, 'scope-b', 2), { scope: 'tenant-b' });
    expect(b.id).not.toBe(a.id);
    expect(await withIdempotency(t.db, 'shared-key', async () => 'x', { scope: 'tenant-a' })).toEqual(a);
    expect(await withIdempotency(t.db, 'shared-key', async () => 'x', { scope: 'tenant-b' })).toEqual(b);
    expect(await count(t.pool, 'charges', `ref in ('scope-a', 'scope-b')`)).toBe(2);
    expect(await count(t.pool, 'idempotency_keys', `key = 'shared-key'`)).toBe(2);
  });
});

describe('expiry', () => {
  it('runs fn again once the ttl has passed, before any sweep', async () => {
    const first = await withIdempotencyOutcome(t.db, 'ttl-1', (tx) => insertCharge(tx, 'ttl-1', 1), { ttl: 1 });
    // Wait until the database clock, not ours, has passed expires_at.
    while (await count(t.pool, 'idempotency_keys', `key = 'ttl-1' and expires_at > statement_timestamp()`)) await sleep(2);
    const second = await withIdempotencyOutcome(t.db, 'ttl-1', (tx) => insertCharge(tx, 'ttl-1', 1), { ttl: '1h' });
    expect(first.replayed).toBe(false);
    expect(second.replayed).toBe(false);
    expect(second.value.id).not.toBe(first.value.id);
    expect(await count(t.pool, 'charges', 'ref = $1', ['ttl-1'])).toBe(2);
    expect(await count(t.pool, 'idempotency_keys', `key = 'ttl-1' and expires_at > now() + interval '50 minutes'`)).toBe(1);
  });

  it('treats an expired key as absent even with another fingerprint', async () => {
    await withIdempotency(t.db, 'ttl-2', async () => 'old', { ttl: 1, fingerprint: 'a' });
    await t.db.execute(sql`update idempotency_keys set expires_at = now() - interval '1 second' where key = 'ttl-2'`);
    expect(await withIdempotency(t.db, 'ttl-2', async () => 'new', { fingerprint: 'b' })).toBe('new');
    expect(await lookupReplay(t.db, 'ttl-2', { fingerprint: 'b' })).toEqual({ value: 'new', replayed: true });
  });
});

describe('lock_timeout', () => {
  it('leaves the caller\'s lock_timeout as it was, whichever path the claim took', async () => {
    const read = async (tx: { execute: typeof t.db.execute }) =>
      ((await tx.execute(sql`select current_setting('lock_timeout') as v`)) as unknown as { rows: { v: string }[] }).rows[0]!.v;
    await t.db.transaction(async (tx) => {
      await tx.execute(sql`set local lock_timeout = '1234ms'`);
      await withIdempotency(tx, 'lt-1', async (inner) => {
        expect(await read(inner)).toBe('1234ms');
        return 1;
      });
      expect(await read(tx)).toBe('1234ms');
      await withIdempotency(tx, 'lt-1', async () => 2); // replay path
      expect(await read(tx)).toBe('1234ms');
    });
  });
});
