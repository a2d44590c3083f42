import { drizzle } from 'drizzle-orm/node-postgres';
import { describe, expect, it } from 'vitest';
import { IdempotencyInFlightError, withIdempotencyOutcome } from '../../src/index.js';
import { waitForWaitingCalls } from '../support/activity.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge } from '../support/fixtures.js';

// A storm of one key (a client retrying in a loop, a redelivery burst) must
// not take the connections other keys need.
const t = await testDatabase();
await createBusinessTables(t.pool);

const DUPLICATES = 200;

describe('200 duplicates of one key on a pool of 10', () => {
  it('take at most one connection between them, so other keys complete while the first still runs', async () => {
    const pool = t.newPool(10);
    const db = drizzle({ client: pool });
    const entered = deferred();
    const release = deferred();
    let calls = 0;
    const fn = async (tx: Parameters<Parameters<typeof db.transaction>[0]>[0]) => {
      calls++;
      const charge = await insertCharge(tx, 'storm', 1);
      entered.resolve();
      await release.promise;
      return charge;
    };
    const first = withIdempotencyOutcome(db, 'storm', fn, { waitTimeout: '60s' });
    await entered.promise;
    const duplicates = Array.from({ length: DUPLICATES }, () => withIdempotencyOutcome(db, 'storm', fn, { waitTimeout: '60s' }));
    await waitForWaitingCalls(DUPLICATES);
    expect(pool.totalCount - pool.idleCount).toBe(1); // the first call's connection, and no other

    let firstStillRunning = true;
    const others = await Promise.all(
      Array.from({ length: 20 }, (_, i) => withIdempotencyOutcome(db, `other-${i}`, (tx) => insertCharge(tx, `other-${i}`, 1))),
    );
    expect(firstStillRunning).toBe(true);
    expect(others.every((o) => !o.replayed)).toBe(true);

    firstStillRunning = false;
    release.resolve();
    const outcomes = await Promise.all([first, ...duplicates]);
    expect(calls).toBe(1);
    expect(outcomes.filter((o) => o.replayed)).toHaveLength(DUPLICATES);
    expect(new Set(outcomes.map((o) => JSON.stringify(o.value))).size).toBe(1);
    expect(await count(t.pool, 'charges', `ref = 'storm'`)).toBe(1);
    await pool.end();
  });

  it("answer in flight at once under 'reject', after one look for a completed key, holding no connection while the first runs", async () => {
    const pool = t.newPool(10);
    const db = drizzle({ client: pool });
    const entered = deferred();
    const release = deferred();
    const first = withIdempotencyOutcome(db, 'storm-reject', async () => {
      entered.resolve();
      await release.promise;
      return 'first';
    });
    await entered.promise;
    const rejected = await Promise.allSettled(
      Array.from({ length: DUPLICATES }, () => withIdempotencyOutcome(db, 'storm-reject', async () => 'again', { onInFlight: 'reject' })),
    );
    expect(rejected.every((r) => r.status === 'rejected' && r.reason instanceof IdempotencyInFlightError)).toBe(true);
    expect(pool.totalCount - pool.idleCount).toBe(1); // the first call's connection, and no other
    release.resolve();
    expect(await first).toEqual({ value: 'first', replayed: false });
    // Once it completed, duplicates replay, however many arrive at once.
    const replays = await Promise.all(
      Array.from({ length: 50 }, () => withIdempotencyOutcome(db, 'storm-reject', async () => 'again', { onInFlight: 'reject' })),
    );
    expect(replays.every((r) => r.replayed && r.value === 'first')).toBe(true);
    await pool.end();
  });

  it('wait in process no longer than waitTimeout', async () => {
    const entered = deferred();
    const release = deferred();
    const first = withIdempotencyOutcome(t.db, 'storm-timeout', async () => {
      entered.resolve();
      await release.promise;
      return 'first';
    });
    await entered.promise;
    const error = await withIdempotencyOutcome(t.db, 'storm-timeout', async () => 'again', { waitTimeout: '100ms' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyInFlightError);
    release.resolve();
    await first;
    expect(await withIdempotencyOutcome(t.db, 'storm-timeout', async () => 'again')).toEqual({ value: 'first', replayed: true });
  });
});
