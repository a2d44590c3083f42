import { beforeEach, describe, expect, it } from 'vitest';
import { IdempotencyOptionsInvalidError, idempotencyStats, migrate } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { keyCounts, seedKeys } from '../support/seed.js';

const t = await testDatabase();

beforeEach(async () => {
  await t.pool.query('truncate idempotency_keys');
});

describe('idempotencyStats', () => {
  it('on an empty table: zero keys, no oldest key, and the size of the empty table', async () => {
    const stats = await idempotencyStats(t.db);

    expect(stats).toMatchObject({ live: 0, expired: 0, inProgress: 0, oldestLive: null });
    expect(stats.tableBytes).toBeGreaterThanOrEqual(0);
    expect(stats.indexBytes).toBeGreaterThan(0);
    expect(stats.now).toBeInstanceOf(Date);
    expect(await keyCounts(t.pool)).toEqual({ total: 0, expired: 0, live: 0 });
  });

  it('counts live, expired and in-progress keys by the database clock, and names the oldest live key', async () => {
    await seedKeys(t.pool, { expired: 300, live: 20 });
    await t.pool.query(`
      insert into idempotency_keys (scope, key, status, created_at, expires_at, locked_until) values
        ('tenant-1', 'oldest', 'completed', now() - interval '3 days', now() + interval '1 hour', null),
        ('',         'leased', 'started',   now(),                     now() + interval '1 hour', now() + interval '5 minutes')`);

    const stats = await idempotencyStats(t.db);

    expect(stats).toMatchObject({ live: 22, expired: 300, inProgress: 1 });
    expect(stats.oldestLive).toMatchObject({ scope: 'tenant-1', key: 'oldest' });
    expect(stats.now.getTime() - stats.oldestLive!.createdAt.getTime()).toBeGreaterThan(3 * 86_400_000 - 60_000);
    expect(stats.oldestLive!.expiresAt.getTime()).toBeGreaterThan(stats.now.getTime());
    expect(stats.tableBytes).toBeGreaterThan(8192);
    // Audit: reading changed nothing.
    expect(await keyCounts(t.pool)).toEqual({ total: 322, expired: 300, live: 22 });
  });

  it('reads the table of a named schema', async () => {
    await migrate(t.db, { schema: 'ops' });
    await seedKeys(t.pool, { expired: 4, live: 2, schema: 'ops' });

    expect(await idempotencyStats(t.db, { schema: 'ops' })).toMatchObject({ live: 2, expired: 4 });
    expect(await keyCounts(t.pool, 'ops')).toEqual({ total: 6, expired: 4, live: 2 });
  });

  it('refuses a schema that is not an identifier with IDEMPOTENCY_OPTIONS_INVALID', async () => {
    await expect(idempotencyStats(t.db, { schema: 'x; drop table idempotency_keys' })).rejects.toBeInstanceOf(
      IdempotencyOptionsInvalidError,
    );
    expect(await keyCounts(t.pool)).toEqual({ total: 0, expired: 0, live: 0 });
  });
});
