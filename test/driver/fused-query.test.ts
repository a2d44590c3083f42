import { drizzle } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge } from '../support/fixtures.js';

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
