import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { IdempotencyOptionsInvalidError, withIdempotencyOutcome } from '../../src/index.js';
import { queryRows } from '../../src/driver/database.js';
import { waitForLockWaiters } from '../support/activity.js';
import { testDatabase } from '../support/db.js';
import { keyRows } from '../support/fixtures.js';

// The wait bound is the transaction's lock_timeout, set by the claim for its
// own statements: the caller's own lock_timeout must be back afterwards.
const t = await testDatabase();

const showLockTimeout = async (tx: typeof t.db) => (await queryRows<{ v: string }>(tx, sql`select current_setting('lock_timeout') as v`))[0]?.v;

describe("the caller's lock_timeout", () => {
  it('is restored after a claim, a replay and a reclaim', async () => {
    await t.pool.query(`insert into idempotency_keys (scope, key, status, response, expires_at)
                        values ('', 'lt-dead', 'completed', '{"value":1}', now() - interval '1 second')`);
    for (const key of ['lt-new', 'lt-new', 'lt-dead']) {
      const seen = await t.db.transaction(async (tx) => {
        await tx.execute(sql`set local lock_timeout = '4321ms'`);
        await withIdempotencyOutcome(tx, key, async () => 'ran', { waitTimeout: '9s' });
        return showLockTimeout(tx as unknown as typeof t.db);
      });
      expect(seen).toBe('4321ms');
    }
  });

  it('is restored after a reclaim that waited for another transaction and then matched nothing', async () => {
    await t.pool.query(`insert into idempotency_keys (scope, key, status, response, expires_at)
                        values ('', 'lt-race', 'completed', '{"value":"old"}', now() - interval '1 second')`);
    // Another transaction holds the dead row (as a reclaimer does), then revives it.
    const holder = await t.pool.connect();
    await holder.query(`begin`);
    await holder.query(`select 1 from idempotency_keys where key = 'lt-race' for update`);
    const caller = t.db.transaction(async (tx) => {
      await tx.execute(sql`set local lock_timeout = '4321ms'`);
      const outcome = await withIdempotencyOutcome(tx, 'lt-race', async () => 'ran', { waitTimeout: '9s' });
      return { outcome, lockTimeout: await showLockTimeout(tx as unknown as typeof t.db) };
    });
    await waitForLockWaiters(t.pool, 1);
    await holder.query(`update idempotency_keys set response = '{"value":"revived"}', expires_at = now() + interval '1 hour' where key = 'lt-race'`);
    await holder.query(`commit`);
    holder.release();
    const { outcome, lockTimeout } = await caller;
    expect(outcome).toEqual({ value: 'revived', replayed: true });
    expect(lockTimeout).toBe('4321ms');
  });
});

describe('waitTimeout', () => {
  it("is refused above PostgreSQL's lock_timeout limit, before any query", async () => {
    const before = await keyRows(t.pool);
    await expect(withIdempotencyOutcome(t.db, 'lt-long', async () => 1, { waitTimeout: '25d' })).rejects.toBeInstanceOf(
      IdempotencyOptionsInvalidError,
    );
    expect(await keyRows(t.pool)).toEqual(before);
  });

  it('takes the longest bound PostgreSQL accepts', async () => {
    expect(await withIdempotencyOutcome(t.db, 'lt-max', async () => 1, { waitTimeout: 2 ** 31 - 1 })).toEqual({ value: 1, replayed: false });
  });
});
