// drizzle-orm/postgres-js: what the library does on its transactions there.
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { migrate, withIdempotency } from '../../src/index.js';
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
