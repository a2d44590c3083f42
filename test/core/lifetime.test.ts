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

  it('tells the key\'s expiry as the database holds it when asked, on the first execution and on replays, on a pool and in the caller\'s transaction', async () => {
    const expiryOf = async (key: string) =>
      (await t.pool.query<{ ms: number }>(`select (extract(epoch from expires_at) * 1000)::float8 as ms from idempotency_keys where key = $1`, [key])).rows[0]!.ms;
    const options = { ttl: '1h', withExpiry: true } as const;
    const first = await withIdempotencyOutcome(t.db, 'tells-expiry', async () => 'done', options);
    const replay = await withIdempotencyOutcome(t.db, 'tells-expiry', async () => 'again', options);
    const inTx = await t.db.transaction((tx) => withIdempotencyOutcome(tx, 'tells-expiry-tx', async () => 'done', options));
    const plain = await withIdempotencyOutcome(t.db, 'tells-expiry', async () => 'again', { ttl: '1h' });
    expect(replay.replayed).toBe(true);
    expect(first.expiresAt!.getTime()).toBe(Math.trunc(await expiryOf('tells-expiry')));
    expect(replay.expiresAt!.getTime()).toBe(first.expiresAt!.getTime());
    expect(inTx.expiresAt!.getTime()).toBe(Math.trunc(await expiryOf('tells-expiry-tx')));
    expect(plain).toEqual({ value: 'done', replayed: true });
    expect(Object.keys(plain)).toEqual(['value', 'replayed']);
  });
});
