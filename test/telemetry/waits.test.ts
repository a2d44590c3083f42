import { describe, expect, it } from 'vitest';
import { withIdempotency, withIdempotencyOutcome } from '../../src/index.js';
import { waitForLockWaiters } from '../support/activity.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge, sleep } from '../support/fixtures.js';
import { recordEvents } from '../support/telemetry.js';

const t = await testDatabase();
await createBusinessTables(t.pool);
const scope = 'waits';

describe('a duplicate that waits on the key’s row lock', () => {
  it('is told as waited when the first call stored its result before the duplicate came, and its transaction went on', async () => {
    const events = recordEvents();
    const stored = deferred();
    const commit = deferred();
    // The caller's transaction: the idempotent call, then more work before COMMIT.
    const first = t.db.transaction(async (tx) => {
      const value = await withIdempotency(tx, 'after-store', (tx) => insertCharge(tx, 'after-store', 5), { scope });
      stored.resolve();
      await commit.promise;
      return value;
    });
    await stored.promise;
    const second = withIdempotencyOutcome(t.db, 'after-store', (tx) => insertCharge(tx, 'after-store', 5), { scope });
    await waitForLockWaiters(t.pool, 1);
    await sleep(200);
    commit.resolve();
    const [value, duplicate] = await Promise.all([first, second]);
    expect(duplicate).toEqual({ value, replayed: true });
    expect(events.byCall(scope, 'after-store')).toEqual([
      ['claimed', 'stored', 'call'],
      ['in-flight', 'replayed', 'call'],
    ]);
    const [inFlight, replayed, call] = events.of(scope, 'after-store').slice(3).map((e) => e.message);
    expect(inFlight).toMatchObject({ action: 'waited', where: 'database' });
    expect(replayed).toMatchObject({ waited: true });
    expect(call).toMatchObject({ outcome: 'replayed', waited: true });
    expect(call!.waitMs as number).toBeGreaterThanOrEqual(200);
    expect(await count(t.pool, 'charges', 'ref = $1', ['after-store'])).toBe(1);
  });

  it('is not told as waited when the key had completed before its claim started', async () => {
    await withIdempotency(t.db, 'done-before', async () => 'done', { scope });
    const events = recordEvents();
    await t.db.transaction((tx) => withIdempotency(tx, 'done-before', async () => 'again', { scope }));
    await withIdempotency(t.db, 'done-before', async () => 'again', { scope });
    expect(events.names(scope, 'done-before')).toEqual(['replayed', 'call', 'replayed', 'call']);
    expect(events.of(scope, 'done-before').map((e) => e.message.waited)).toEqual([false, false, false, false]);
  });
});
