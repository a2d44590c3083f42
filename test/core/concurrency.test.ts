import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { IdempotencyInFlightError, withIdempotency, withIdempotencyOutcome } from '../../src/index.js';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge, sleep } from '../support/fixtures.js';
import { retryTransaction } from '../support/retry.js';

const t = await testDatabase({ max: 60 });
await createBusinessTables(t.pool);

const LEVELS = ['read committed', 'repeatable read', 'serializable'] as const;
const CALLERS = 50;

/** fn for the storms: one charge, held open a little so duplicates pile up on the claim. */
function chargeOnce(ref: string, calls: { n: number }) {
  return async (tx: IdempotencyDatabase) => {
    calls.n++;
    const charge = await insertCharge(tx, ref, 500);
    await sleep(30);
    return charge;
  };
}

describe.each(LEVELS)('50 concurrent callers of one new key under %s', (isolationLevel) => {
  it('runs fn once when callers own their transactions and retry the retryable error', async () => {
    const ref = `own-${isolationLevel}`;
    const calls = { n: 0 };
    let retries = 0;
    const results = await Promise.all(
      Array.from({ length: CALLERS }, () =>
        retryTransaction(
          () => t.db.transaction((tx) => withIdempotencyOutcome(tx, ref, chargeOnce(ref, calls)), { isolationLevel }),
          () => retries++,
        ),
      ),
    );
    expect(calls.n).toBe(1);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(new Set(results.map((r) => JSON.stringify(r.value))).size).toBe(1);
    // Postgres answers blocked duplicates with 40001 only above READ COMMITTED.
    if (isolationLevel === 'read committed') expect(retries).toBe(0);
    else expect(retries).toBeGreaterThan(0);
    expect(await count(t.pool, 'charges', 'ref = $1', [ref])).toBe(1);
    expect(await count(t.pool, 'idempotency_keys', `key = $1 and status = 'completed'`, [ref])).toBe(1);
  });

  it('runs fn once when given the database, retrying serialization failures itself', async () => {
    const ref = `db-${isolationLevel}`;
    const calls = { n: 0 };
    const results = await Promise.all(
      Array.from({ length: CALLERS }, () =>
        withIdempotencyOutcome(t.db, ref, chargeOnce(ref, calls), { transaction: { isolationLevel }, serializationRetries: 5 }),
      ),
    );
    expect(calls.n).toBe(1);
    expect(results.filter((r) => r.replayed)).toHaveLength(CALLERS - 1);
    expect(new Set(results.map((r) => JSON.stringify(r.value))).size).toBe(1);
    expect(await count(t.pool, 'charges', 'ref = $1', [ref])).toBe(1);
  });
});

describe('stock under 40 concurrent distinct keys', () => {
  it('sells exactly the stock there is, never below zero, and replays do not decrement again', async () => {
    await t.pool.query(`insert into stock (sku, quantity) values ('widget', 100)`);
    const reserve = (key: string) =>
      withIdempotency(t.db, key, async (tx) => {
        const { rows } = (await tx.execute(sql`select quantity from stock where sku = 'widget' for update`)) as unknown as {
          rows: { quantity: number }[];
        };
        if (rows[0]!.quantity < 10) return { reserved: false, remaining: rows[0]!.quantity };
        await tx.execute(sql`update stock set quantity = quantity - 10 where sku = 'widget'`);
        await insertCharge(tx, key, 10);
        return { reserved: true, remaining: rows[0]!.quantity - 10 };
      });
    const keys = Array.from({ length: 40 }, (_, i) => `reserve-${i}`);
    const first = await Promise.all(keys.map(reserve));
    const winners = keys.filter((_, i) => first[i]!.reserved);
    expect(winners).toHaveLength(10);

    const replays = await Promise.all(keys.map(reserve));
    expect(replays).toEqual(first);

    const { rows } = await t.pool.query<{ quantity: number }>(`select quantity from stock where sku = 'widget'`);
    expect(rows[0]!.quantity).toBe(0);
    expect(await count(t.pool, 'charges', `ref like 'reserve-%'`)).toBe(10);
    expect(await count(t.pool, 'idempotency_keys', `key like 'reserve-%' and status = 'completed'`)).toBe(40);
  });
});

describe('a duplicate while the first call is in flight', () => {
  it("fails fast with IDEMPOTENCY_IN_FLIGHT under 'reject', then gets the replay", async () => {
    const inside = deferred();
    const release = deferred();
    const first = withIdempotency(t.db, 'reject-1', async (tx) => {
      const charge = await insertCharge(tx, 'reject-1', 1);
      inside.resolve();
      await release.promise;
      return charge;
    });
    await inside.promise;
    const started = performance.now();
    const error = await withIdempotency(t.db, 'reject-1', async () => 'must not run', { onInFlight: 'reject' }).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    release.resolve();
    const value = await first;
    expect(error).toBeInstanceOf(IdempotencyInFlightError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_IN_FLIGHT', status: 409, retryable: true });
    expect(elapsed).toBeLessThan(100);
    expect(await withIdempotencyOutcome(t.db, 'reject-1', async () => 'must not run', { onInFlight: 'reject' })).toEqual({
      value,
      replayed: true,
    });
    expect(await count(t.pool, 'charges', 'ref = $1', ['reject-1'])).toBe(1);
  });

  it("gives up with IDEMPOTENCY_IN_FLIGHT when 'wait' outlasts waitTimeout", async () => {
    const inside = deferred();
    const release = deferred();
    const first = withIdempotency(t.db, 'wait-bound', async (tx) => {
      await insertCharge(tx, 'wait-bound', 1);
      inside.resolve();
      await release.promise;
      return 'first';
    });
    await inside.promise;
    const error = await withIdempotency(t.db, 'wait-bound', async () => 'second', { waitTimeout: 50 }).catch((e: unknown) => e);
    release.resolve();
    await first;
    expect(error).toBeInstanceOf(IdempotencyInFlightError);
    expect(await withIdempotency(t.db, 'wait-bound', async () => 'second')).toBe('first');
    expect(await count(t.pool, 'charges', 'ref = $1', ['wait-bound'])).toBe(1);
  });

  it('runs fn itself when the first rolls back while it waits', async () => {
    const inside = deferred();
    const release = deferred();
    const first = withIdempotency(t.db, 'first-fails', async (tx) => {
      await insertCharge(tx, 'first-fails', 1);
      inside.resolve();
      await release.promise;
      throw new Error('first attempt fails');
    });
    await inside.promise;
    const second = withIdempotencyOutcome(t.db, 'first-fails', (tx) => insertCharge(tx, 'first-fails', 1));
    await sleep(20); // let the duplicate reach its claim and block on the first
    release.resolve();
    await expect(first).rejects.toThrow('first attempt fails');
    expect((await second).replayed).toBe(false);
    expect(await count(t.pool, 'charges', 'ref = $1', ['first-fails'])).toBe(1);
  });

  it('is released the moment the first rolls back to its savepoint, with its transaction still open', async () => {
    const rolledBack = deferred();
    const finish = deferred();
    const outer = t.db.transaction(async (tx) => {
      await withIdempotency(tx, 'savepoint-release', async () => {
        throw new Error('inner failure');
      }).catch(() => undefined);
      rolledBack.resolve();
      await finish.promise; // the outer transaction stays open
    });
    await rolledBack.promise;
    const second = await withIdempotencyOutcome(t.db, 'savepoint-release', (tx) => insertCharge(tx, 'savepoint-release', 1), {
      onInFlight: 'reject',
    });
    finish.resolve();
    await outer;
    expect(second.replayed).toBe(false);
    expect(await count(t.pool, 'charges', 'ref = $1', ['savepoint-release'])).toBe(1);
  });
});

describe('replays and reclaims racing each other', () => {
  it("lets two transactions replay one completed key at once, even under 'reject'", async () => {
    const stored = await withIdempotency(t.db, 'replay-race', (tx) => insertCharge(tx, 'replay-race', 1));
    const inside = deferred();
    const release = deferred();
    const holder = t.db.transaction(async (tx) => {
      const replay = await withIdempotencyOutcome(tx, 'replay-race', async () => 'must not run', { onInFlight: 'reject' });
      inside.resolve();
      await release.promise; // a replay whose transaction stays open
      return replay;
    });
    await inside.promise;
    const second = await t.db.transaction((tx) =>
      withIdempotencyOutcome(tx, 'replay-race', async () => 'must not run', { onInFlight: 'reject' }),
    );
    release.resolve();
    expect(second).toEqual({ value: stored, replayed: true });
    expect(await holder).toEqual({ value: stored, replayed: true });
    expect(await count(t.pool, 'charges', 'ref = $1', ['replay-race'])).toBe(1);
  });

  it('runs fn once for 30 concurrent callers of one expired key, and replays that to the rest', async () => {
    await withIdempotency(t.db, 'expired-race', (tx) => insertCharge(tx, 'expired-race', 1));
    await t.pool.query(`update idempotency_keys set expires_at = now() - interval '1 second' where key = 'expired-race'`);
    const calls = { n: 0 };
    const results = await Promise.all(
      Array.from({ length: 30 }, () => withIdempotencyOutcome(t.db, 'expired-race', chargeOnce('expired-race', calls))),
    );
    expect(calls.n).toBe(1);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(new Set(results.map((r) => JSON.stringify(r.value))).size).toBe(1);
    expect(await count(t.pool, 'charges', 'ref = $1', ['expired-race'])).toBe(2); // the old one and one new
    expect(await count(t.pool, 'idempotency_keys', `key = 'expired-race' and status = 'completed' and expires_at > now()`)).toBe(1);
  });
});
