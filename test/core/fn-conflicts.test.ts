// A serialization failure or a deadlock raised by one of fn's own statements,
// in the transaction withIdempotency opened: nothing of the attempt committed
// (not the claim, not fn's writes), so the library runs the transaction again,
// as it does when the claim or the COMMIT fails that way, and once its
// retries are used up it fails with the typed, retryable error.
import { sql } from 'drizzle-orm';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  IdempotencyDeadlockError,
  IdempotencySerializationError,
  withIdempotencyOutcome,
  type IdempotencyDatabase,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

const STOCK = 100;
beforeEach(async () => {
  await t.pool.query(`delete from stock; insert into stock (sku, quantity) values ('apple', ${STOCK}), ('pear', ${STOCK})`);
});

const quantity = async (sku: string) =>
  Number((await t.pool.query<{ quantity: number }>('select quantity from stock where sku = $1', [sku])).rows[0]!.quantity);
const keyStatus = async (key: string) =>
  (await t.pool.query<{ status: string }>('select status from idempotency_keys where key = $1', [key])).rows[0]?.status;

/**
 * fn for `key` under REPEATABLE READ: on its first run, another transaction
 * sells an apple and commits after fn's snapshot was taken (the claim took
 * it), so fn's own UPDATE of that row fails with 40001. Later runs sell
 * without interference.
 */
function sellAfterAConcurrentSale(key: string) {
  const runs = { count: 0 };
  const fn = async (tx: IdempotencyDatabase) => {
    runs.count++;
    if (runs.count === 1) await t.pool.query(`update stock set quantity = quantity - 1 where sku = 'apple'`);
    await tx.execute(sql`update stock set quantity = quantity - 1 where sku = 'apple'`);
    return insertCharge(tx, key, 500);
  };
  return { fn, runs };
}

describe("a serialization failure in one of fn's statements, given a database", () => {
  it('runs the transaction again: fn takes effect once, the key completes, the answer is not a replay', async () => {
    const key = 'fn-serialization-retried';
    const { fn, runs } = sellAfterAConcurrentSale(key);
    const outcome = await withIdempotencyOutcome(t.db, key, fn, { transaction: { isolationLevel: 'repeatable read' } });
    expect(outcome.replayed).toBe(false);
    expect(runs.count).toBe(2);
    // Audit: the concurrent sale and one sale of fn; one charge; the key completed.
    expect(await quantity('apple')).toBe(STOCK - 2);
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
    expect(await keyStatus(key)).toBe('completed');
    const replay = await withIdempotencyOutcome(t.db, key, fn, { transaction: { isolationLevel: 'repeatable read' } });
    expect(replay).toEqual({ value: outcome.value, replayed: true });
    expect(runs.count).toBe(2);
  });

  it('fails with IDEMPOTENCY_SERIALIZATION_FAILURE once serializationRetries are used up, and nothing of fn or the key is kept', async () => {
    const key = 'fn-serialization-no-retries';
    const { fn, runs } = sellAfterAConcurrentSale(key);
    const error = await withIdempotencyOutcome(t.db, key, fn, { transaction: { isolationLevel: 'repeatable read' }, serializationRetries: 0 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(IdempotencySerializationError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_SERIALIZATION_FAILURE', retryable: true, status: 409, cause: { code: '40001' } });
    // The driver's wrapper (which prints every parameter of fn's statement) is not passed on.
    expect(String((error as Error).cause)).not.toMatch(/params/i);
    expect(runs.count).toBe(1);
    expect(await quantity('apple')).toBe(STOCK - 1); // the concurrent sale only
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(0);
    expect(await keyStatus(key)).toBeUndefined();
  });

  it("passes a serialization failure from outside the library's transaction through unchanged, and runs fn once", async () => {
    // fn writes through the pool (autocommit, committed at once), then a statement there fails with 40001:
    // the library's transaction is intact, so running fn again would write twice.
    const key = 'fn-serialization-elsewhere';
    let runs = 0;
    const error = await withIdempotencyOutcome(t.db, key, async (tx) => {
      runs++;
      await t.pool.query('insert into charges (ref, amount) values ($1, 1)', [key]);
      await t.pool.query(`do $$ begin raise exception 'conflict elsewhere' using errcode = 'serialization_failure'; end $$`);
      return insertCharge(tx, key, 500);
    }).catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(IdempotencySerializationError);
    expect(error).toMatchObject({ code: '40001', message: 'conflict elsewhere' });
    expect(runs).toBe(1);
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1); // the autocommitted write, once
    expect(await keyStatus(key)).toBeUndefined();
  });

  it("passes fn's own error through unchanged when it wraps a serialization failure fn caught", async () => {
    const key = 'fn-serialization-wrapped';
    const { fn: sell, runs } = sellAfterAConcurrentSale(key);
    const declined = new Error('declined: try again later');
    const fn = (tx: IdempotencyDatabase) =>
      sell(tx).catch((cause: unknown) => {
        throw Object.assign(declined, { cause });
      });
    const error = await withIdempotencyOutcome(t.db, key, fn, { transaction: { isolationLevel: 'repeatable read' } }).catch((e: unknown) => e);
    expect(error).toBe(declined);
    expect(runs.count).toBe(1);
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(0);
    expect(await keyStatus(key)).toBeUndefined();
  });

  it('is passed through unchanged in your own transaction: the whole transaction is yours to run again', async () => {
    const key = 'fn-serialization-in-callers-tx';
    const { fn } = sellAfterAConcurrentSale(key);
    const error = await t.db
      .transaction((tx) => withIdempotencyOutcome(tx, key, fn), { isolationLevel: 'repeatable read' })
      .catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(IdempotencySerializationError);
    expect(error).toMatchObject({ cause: { code: '40001' } });
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(0);
    expect(await keyStatus(key)).toBeUndefined();
  });
});

describe("a deadlock between fn's statements and another transaction, given a database", () => {
  /**
   * fn takes the apple row, then waits for the pear row that another
   * transaction holds; that transaction then waits for the apple row.
   * fn's session detects the cycle first (its deadlock_timeout is the
   * shorter), so fn's statement is the one Postgres fails with 40P01.
   */
  async function deadlockOnce(key: string, retries: number) {
    const other = await t.pool.connect();
    const runs = { count: 0 };
    const appleTaken = deferred();
    try {
      await other.query('begin');
      await other.query(`update stock set quantity = quantity - 1 where sku = 'pear'`);
      const fn = async (tx: IdempotencyDatabase) => {
        runs.count++;
        await tx.execute(sql`set local deadlock_timeout = '50ms'`);
        await tx.execute(sql`update stock set quantity = quantity - 1 where sku = 'apple'`);
        if (runs.count === 1) appleTaken.resolve();
        await tx.execute(sql`update stock set quantity = quantity - 1 where sku = 'pear'`);
        return insertCharge(tx, key, 500);
      };
      const call = withIdempotencyOutcome(t.db, key, fn, { serializationRetries: retries }).then(
        (outcome) => ({ outcome }),
        (error: unknown) => ({ error }),
      );
      await appleTaken.promise;
      // Blocks on fn's apple row until Postgres fails fn's transaction (deadlock_timeout there is 50 ms; here 1 s).
      await other.query(`update stock set quantity = quantity - 1 where sku = 'apple'`);
      await other.query('commit');
      return { result: await call, runs };
    } finally {
      other.release();
    }
  }

  it('runs the transaction again: fn takes effect once, after the other transaction committed', async () => {
    const key = 'fn-deadlock-retried';
    const { result, runs } = await deadlockOnce(key, 3);
    expect(result).toMatchObject({ outcome: { replayed: false } });
    expect(runs.count).toBe(2);
    // Audit: the other transaction's two sales and fn's two, once.
    expect(await quantity('apple')).toBe(STOCK - 2);
    expect(await quantity('pear')).toBe(STOCK - 2);
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
    expect(await keyStatus(key)).toBe('completed');
  });

  it('fails with IDEMPOTENCY_DEADLOCK once serializationRetries are used up, and nothing of fn or the key is kept', async () => {
    const key = 'fn-deadlock-no-retries';
    const { result, runs } = await deadlockOnce(key, 0);
    expect('error' in result && result.error).toBeInstanceOf(IdempotencyDeadlockError);
    expect(result).toMatchObject({ error: { code: 'IDEMPOTENCY_DEADLOCK', retryable: true, cause: { code: '40P01' } } });
    expect(runs.count).toBe(1);
    expect(await quantity('apple')).toBe(STOCK - 1);
    expect(await quantity('pear')).toBe(STOCK - 1);
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(0);
    expect(await keyStatus(key)).toBeUndefined();
  });
});
