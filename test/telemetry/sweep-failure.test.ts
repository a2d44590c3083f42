import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { IDEMPOTENCY_CHANNELS, sweepExpiredKeys, type IdempotencySweptEvent } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count } from '../support/fixtures.js';

const t = await testDatabase();

describe('a sweep that fails after some batches committed', () => {
  it('still tells the keys it deleted (stoppedBy failed), so that counts of swept keys match the table', async () => {
    await t.pool.query(`insert into idempotency_keys (scope, key, status, expires_at)
      select 'failing-sweep', 'k' || i, 'completed', now() - interval '1 minute' from generate_series(1, 3000) as i`);
    const swept: IdempotencySweptEvent[] = [];
    const listener = (message: unknown) => swept.push(message as IdempotencySweptEvent);
    subscribe(IDEMPOTENCY_CHANNELS.swept, listener);
    // One connection of its own (a pool would just reconnect).
    const sweeper = new pg.Client({ connectionString: t.url, application_name: 'failing-sweeper' });
    sweeper.on('error', () => {});
    await sweeper.connect();
    let killing: Promise<unknown> | undefined;
    try {
      await expect(
        sweepExpiredKeys(drizzle({ client: sweeper }), {
          batchSize: 1,
          // Once a few batches committed, its connection is killed.
          onBatch: ({ batches }) => {
            if (batches === 3) {
              killing = t.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'failing-sweeper'`);
            }
          },
        }),
      ).rejects.toThrow();
      await killing;
    } finally {
      await sweeper.end().catch(() => {});
      unsubscribe(IDEMPOTENCY_CHANNELS.swept, listener);
    }
    const left = await count(t.pool, 'idempotency_keys', `scope = 'failing-sweep'`);
    expect(left).toBeGreaterThan(0);
    expect(swept).toEqual([{ deleted: 3000 - left, batches: expect.any(Number), durationMs: expect.any(Number), stoppedBy: 'failed' }]);
  });
});
