import { drizzle } from 'drizzle-orm/node-postgres';
import { describe, expect, it } from 'vitest';
import { IdempotencyKeyReusedError, IdempotencySerializationError, withIdempotency } from '../../src/index.js';
import { waitForLockWaiters } from '../support/activity.js';
import { testDatabase } from '../support/db.js';
import { deferred } from '../support/fixtures.js';
import { recordEvents } from '../support/telemetry.js';

const t = await testDatabase();
const scope = 'retries';

describe('a call its own transaction retries', () => {
  it('ends as its last attempt did: an attempt rolled back, the retry refused as key reused, is told key-reused', async () => {
    const events = recordEvents();
    // Another process (its own pool) sends the same key with another body while the first attempt holds it.
    const elsewhere = drizzle({ client: t.newPool(2) });
    const holding = deferred();
    const release = deferred();
    const call = withIdempotency(
      t.db,
      'retry-reused',
      async () => {
        holding.resolve();
        await release.promise;
        // What a nested call's claim throws under REPEATABLE READ: the whole transaction runs again.
        throw new IdempotencySerializationError('could not serialize');
      },
      { scope, fingerprint: 'mine' },
    );
    await holding.promise;
    const other = withIdempotency(elsewhere, 'retry-reused', async () => 'other body', { scope, fingerprint: 'other' });
    await waitForLockWaiters(t.pool, 1);
    release.resolve();
    await expect(call).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await other).toBe('other body');
    const mine = events.byCall(scope, 'retry-reused').find((names) => names.includes('rolled-back'))!;
    expect(mine.slice(0, 2)).toEqual(['claimed', 'rolled-back']);
    expect(mine.slice(-2)).toEqual(['key-reused', 'call']); // the retry may have waited for the other first ('in-flight')
    const calls = events.of(scope, 'retry-reused').filter((e) => e.event === 'call').map((e) => e.message);
    expect(calls).toContainEqual(expect.objectContaining({ outcome: 'key-reused', error: 'IDEMPOTENCY_KEY_REUSED' }));
    expect(calls).not.toContainEqual(expect.objectContaining({ outcome: 'rolled-back' }));
  });
});
