// drizzle-orm/postgres-js: what the library does on its transactions there.
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { migrate, withIdempotency, withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { chargeOn } from '../support/drivers.js';
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
