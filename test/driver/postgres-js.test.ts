// drizzle-orm/postgres-js: what the library does on its transactions there.
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { IdempotencyDriverUnsupportedError, migrate, withIdempotency, withIdempotencyOutcome } from '../../src/index.js';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { executeSqlOn } from '../../src/pg-boss.js';
import { testDatabase } from '../support/db.js';
import { chargeOn } from '../support/drivers.js';
import { drizzleMajor } from '../support/drizzle-version.js';
import { count, createBusinessTables } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);
const client = postgres(t.url, { max: 2, onnotice: () => {} });
const db = drizzle({ client });
afterAll(() => client.end({ timeout: 5 }));

describe("the caller's postgres.js transaction", () => {
  it('is never committed by the library: migrate() and withIdempotency inside it roll back with it', async () => {
    const rolledBack = await db
      .transaction(async (tx) => {
        await migrate(tx, { schema: 'pjs_rolled_back' });
        await withIdempotency(tx, 'pjs-rolled-back', (inner) => chargeOn(inner, 'pjs-rolled-back', 1));
        throw new Error('the caller rolls back');
      })
      .catch((e: unknown) => (e as Error).message);
    expect(rolledBack).toBe('the caller rolls back');
    expect(await count(t.pool, 'information_schema.schemata', `schema_name = 'pjs_rolled_back'`)).toBe(0);
    expect(await count(t.pool, 'charges', `ref = 'pjs-rolled-back'`)).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'pjs-rolled-back'`)).toBe(0);
  });
});

describe('the stored result on postgres.js', () => {
  // postgres.js JSON-encodes a value sent for a json or jsonb parameter;
  // drizzle-orm 0.44+ turns that off on the client, 1.0 no longer does. The
  // result the library sends is already JSON text, so encoded once more it
  // would be stored as a JSON string and read back as nothing.
  it.each([
    ['the database', async (key: string, value: unknown) => withIdempotencyOutcome(db, key, async () => value)],
    ["the caller's transaction", async (key: string, value: unknown) => db.transaction((tx) => withIdempotencyOutcome(tx, key, async () => value))],
  ])('is stored as the JSON of what fn returned, and returned and replayed as it, given %s', async (given, call) => {
    const key = `pjs-stored-json-${given}`;
    const value = { orderId: 7, lines: ['a', 'b'], total: 1.5, note: null };
    expect(await call(key, value)).toEqual({ value, replayed: false });
    expect(await call(key, { orderId: 8 })).toEqual({ value, replayed: true });
    const { rows } = await t.pool.query(`select jsonb_typeof(response) as type, response->'value' as value from idempotency_keys where key = $1`, [key]);
    expect(rows).toEqual([{ type: 'object', value }]);
  });
});

describe("pg-boss's adapter (executeSqlOn) on postgres.js", () => {
  // pg-boss sends a job's data as an object for `$3::jsonb`; the adapter sends
  // it as JSON text, as node-postgres would. postgres.js under drizzle-orm 1.0
  // JSON-encodes jsonb parameters once more: the job would hold a JSON string.
  const jsonbOf = async (on: IdempotencyDatabase) => {
    const { rows } = await executeSqlOn(on).executeSql('select jsonb_typeof($1::jsonb) as type, $1::jsonb as data', [{ userId: 7 }]);
    return rows;
  };

  it.each([
    ['the database', () => jsonbOf(db)],
    ["the caller's transaction", () => db.transaction((tx) => jsonbOf(tx))],
  ])('never turns a JSON value of pg-boss into a JSON string, given %s: it sends it as JSON, or refuses before sending anything', async (_given, run) => {
    const outcome = await run().catch((e: unknown) => e);
    if (drizzleMajor === 0) expect(outcome).toEqual([{ type: 'object', data: { userId: 7 } }]);
    else {
      expect(outcome).toBeInstanceOf(IdempotencyDriverUnsupportedError);
      expect((outcome as Error).message).toContain('postgres.js');
    }
  });
});
