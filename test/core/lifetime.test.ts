import { drizzle } from 'drizzle-orm/node-postgres';
import { describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, sleep } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

describe('a key\'s lifetime', () => {
  it('counts the TTL from completion, however long fn ran', async () => {
    await withIdempotencyOutcome(t.db, 'ttl-from-completion', async () => {
      await sleep(300);
      return 'done';
    }, { ttl: '1h' });
    const { rows } = await t.pool.query<{ lived: number; ran: number }>(
      `select extract(epoch from expires_at - completed_at)::float8 as lived,
              extract(epoch from completed_at - created_at)::float8 as ran
       from idempotency_keys where key = 'ttl-from-completion'`,
    );
    expect(rows[0]!.lived).toBeCloseTo(3600, 1);
    expect(rows[0]!.ran).toBeGreaterThanOrEqual(0.3);
  });

  it.each([
    ['in this process', () => t.db],
    ['from another pool', () => drizzle({ client: t.newPool(2) })],
  ])('replays to a duplicate that waited %s while fn outlived the TTL', async (_where, duplicateDb) => {
    const key = `outlived-${_where.replace(/\W/g, '-')}`;
    let calls = 0;
    const fn = async (tx: Parameters<Parameters<typeof t.db.transaction>[0]>[0]) => {
      calls++;
      const charge = await insertCharge(tx, key, 1);
      await sleep(400); // longer than the TTL
      return charge;
    };
    const first = withIdempotencyOutcome(t.db, key, fn, { ttl: '200ms' });
    await sleep(50);
    const duplicate = await withIdempotencyOutcome(duplicateDb(), key, fn, { ttl: '200ms' });
    expect((await first).replayed).toBe(false);
    expect(duplicate.replayed).toBe(true);
    expect(calls).toBe(1);
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
  });
});
