import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { evictKey, IdempotencyError, withIdempotency } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, sleep } from '../support/fixtures.js';

// drizzle(client) over one pg.Client: every transaction the library opens is
// on that one connection, so they must take turns, and a call on the database
// inside fn cannot open a transaction of its own.
const t = await testDatabase();
await createBusinessTables(t.pool);
const client = new pg.Client({ connectionString: t.url });
client.on('error', () => {});
await client.connect();
const db = drizzle({ client });
afterAll(() => client.end());

describe('a database on one pg.Client', () => {
  it('runs concurrent calls for different keys one after another: one that throws keeps nothing', async () => {
    const a = withIdempotency(db, 'lone-a', (tx) => insertCharge(tx, 'lone-a', 1));
    const b = withIdempotency(db, 'lone-b', async (tx) => {
      await insertCharge(tx, 'lone-b', 1);
      await sleep(50);
      await insertCharge(tx, 'lone-b', 2);
      throw new Error('declined');
    });
    const settled = await Promise.allSettled([a, b]);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected']);
    expect(await count(t.pool, 'charges', `ref = 'lone-b'`)).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'lone-b'`)).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'lone-a' and status = 'completed'`)).toBe(1);
  });

  it('refuses a call on the database inside fn with a typed error, and keeps nothing of the outer call', async () => {
    const error = await withIdempotency(db, 'lone-outer', async (tx) => {
      await insertCharge(tx, 'lone-outer', 1);
      return withIdempotency(db, 'lone-inner', (t2) => insertCharge(t2, 'lone-inner', 1));
    }).catch((e: unknown) => e);
    expect((error as IdempotencyError).code).toBe('IDEMPOTENCY_REENTRANT_CALL');
    expect(await count(t.pool, 'charges', `ref in ('lone-outer', 'lone-inner')`)).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key in ('lone-outer', 'lone-inner')`)).toBe(0);
    expect((await client.query('select 1 as ok')).rows).toEqual([{ ok: 1 }]);
  });

  it('runs a call on fn\'s transaction inside fn as a savepoint', async () => {
    await withIdempotency(db, 'lone-outer-2', async (tx) => {
      await withIdempotency(tx, 'lone-inner-2', (t2) => insertCharge(t2, 'lone-inner-2', 1));
      return insertCharge(tx, 'lone-outer-2', 1);
    });
    expect(await count(t.pool, 'idempotency_keys', `key in ('lone-outer-2', 'lone-inner-2') and status = 'completed'`)).toBe(2);
    await db.execute(sql`select 1`);
  });

  it("refuses evictKey on the database inside fn (its own COMMIT or ROLLBACK on the one session would end fn's transaction midway), and fn's call keeps nothing", async () => {
    const error = await withIdempotency(db, 'lone-outer-3', async (tx) => {
      await insertCharge(tx, 'lone-outer-3', 1);
      await evictKey(db, 'lone-a');
      throw new Error('declined after the eviction');
    }).catch((e: unknown) => e);
    expect((error as IdempotencyError).code).toBe('IDEMPOTENCY_REENTRANT_CALL');
    expect(await count(t.pool, 'charges', `ref = 'lone-outer-3'`)).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'lone-outer-3'`)).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'lone-a'`)).toBe(1);
  });
});

describe('a client checked out of a pool, given as the database', () => {
  it('fails the call when its backend is terminated, and the process keeps running', async () => {
    const pool = t.newPool(2);
    const checkedOut = await pool.connect();
    checkedOut.removeAllListeners('error'); // as pg-pool hands it over: nobody listens
    const pid = (await checkedOut.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    const error = await withIdempotency(drizzle({ client: checkedOut }), 'checked-out', async (tx) => {
      await insertCharge(tx, 'checked-out', 1);
      await t.pool.query('select pg_terminate_backend($1)', [pid]);
      await sleep(200);
      return tx.execute(sql`select 1`);
    }).catch((e: unknown) => e);
    expect((error as IdempotencyError).code).toBe('IDEMPOTENCY_CONNECTION_LOST');
    expect(await count(t.pool, 'charges', `ref = 'checked-out'`)).toBe(0);
    checkedOut.release(true);
  });
});
