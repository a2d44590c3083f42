import { drizzle } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge } from '../support/fixtures.js';
import { sql } from 'drizzle-orm';

const t = await testDatabase();
await createBusinessTables(t.pool);

type QueryArgs = [Record<string, unknown>, ...unknown[]];

/**
 * Wraps `client.query` as @opentelemetry/instrumentation-pg did in early 2023:
 * a query object with a callback is sent as a plain copy with a callback of
 * its own, so node-postgres builds a new Query from it.
 */
function copyQueries(client: pg.PoolClient | pg.Client): void {
  const original = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: QueryArgs) => unknown }).query = (...args) => {
    const [first] = args;
    const callback = first?.callback;
    if (first && typeof first.text === 'string' && typeof callback === 'function' && typeof args.at(-1) !== 'function') {
      args[0] = { ...first, callback: (error: unknown, result: unknown) => (callback as (e: unknown, r: unknown) => void)(error, result) };
    }
    return original(...args);
  };
}

const audit = async (key: string) => ({
  charges: await count(t.pool, 'charges', 'ref = $1', [key]),
  completed: await count(t.pool, 'idempotency_keys', `key = $1 and status = 'completed'`, [key]),
  started: await count(t.pool, 'idempotency_keys', `key = $1 and status = 'started'`, [key]),
});

describe('BEGIN and COMMIT inside the claim and the store, behind a client.query wrapper that sends copies', () => {
  it('falls back to sending them apart: one effect per key, every retry replays, nothing left started', async () => {
    const pool = t.newPool(2, { pipeline: true });
    pool.on('connect', copyQueries);
    const db = drizzle({ client: pool });
    for (const key of ['copied-1', 'copied-2']) {
      const first = await withIdempotencyOutcome(db, key, (tx) => insertCharge(tx, key, 100));
      const again = await withIdempotencyOutcome(db, key, () => Promise.reject(new Error('ran twice')));
      expect(first.replayed).toBe(false);
      expect(again).toEqual({ value: first.value, replayed: true });
      expect(await audit(key)).toEqual({ charges: 1, completed: 1, started: 0 });
    }
  });

  it('removes the claim that committed alone when the wrapper arrives after BEGIN was already fused, and runs fn once', async () => {
    const pool = t.newPool(1, { pipeline: true });
    const db = drizzle({ client: pool });
    // Fused on this connection from now on: its COMMIT came back whole, the claim is parsed.
    await withIdempotencyOutcome(db, 'late-wrap-0', (tx) => insertCharge(tx, 'late-wrap-0', 1));
    await withIdempotencyOutcome(db, 'late-wrap-1', (tx) => insertCharge(tx, 'late-wrap-1', 1));
    const client = await pool.connect();
    copyQueries(client);
    client.release();
    let runs = 0;
    const outcome = await withIdempotencyOutcome(db, 'late-wrap-2', (tx) => {
      runs++;
      return insertCharge(tx, 'late-wrap-2', 100);
    });
    expect(outcome.replayed).toBe(false);
    expect(runs).toBe(1);
    expect(await audit('late-wrap-2')).toEqual({ charges: 1, completed: 1, started: 0 });
    expect((await withIdempotencyOutcome(db, 'late-wrap-2', () => Promise.reject(new Error('ran twice')))).replayed).toBe(true);
  });
});

describe('a fused query the client refuses to send', () => {
  it('fails the call as before and does not run fn again, when the store is the first query after the backend died', async () => {
    const pool = t.newPool(2, { pipeline: true });
    const db = drizzle({ client: pool });
    await withIdempotencyOutcome(db, 'refused-warmup', (tx) => insertCharge(tx, 'refused-warmup', 1));
    const inside = deferred<number>();
    const gate = deferred();
    let runs = 0;
    const call = withIdempotencyOutcome(db, 'refused-store', async (tx) => {
      runs++;
      await insertCharge(tx, 'refused-store', 100);
      inside.resolve(((await tx.execute(sql`select pg_backend_pid() as pid`)) as unknown as { rows: { pid: number }[] }).rows[0]!.pid);
      await gate.promise;
      return 'stored?';
    });
    await t.pool.query('select pg_terminate_backend($1)', [await inside.promise]);
    // Let node-postgres notice the end of the connection before the store is sent on it.
    await new Promise((resolve) => setTimeout(resolve, 100));
    gate.resolve();
    // Whether the store had gone out is not known to the call: a retry with the key is safe either way.
    await expect(call).rejects.toMatchObject({ code: 'IDEMPOTENCY_COMMIT_FAILED' });
    expect(runs).toBe(1);
    expect(await audit('refused-store')).toEqual({ charges: 0, completed: 0, started: 0 });
  });
});
