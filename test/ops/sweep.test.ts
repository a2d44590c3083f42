import { readFile } from 'node:fs/promises';
import { drizzle } from 'drizzle-orm/node-postgres';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import {
  IdempotencyOptionsInvalidError,
  migrate,
  sweepExpiredKeys,
  withIdempotencyOutcome,
  type SweepProgress,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge } from '../support/fixtures.js';
import { keyCounts, seedKeys } from '../support/seed.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

beforeEach(async () => {
  await t.pool.query('truncate idempotency_keys, charges');
});

/** The key row as the audit sees it. */
async function keyRow(key: string, scope = '') {
  const { rows } = await t.pool.query<{ status: string; response: { value: unknown }; live: boolean }>(
    'select status, response, expires_at > now() as live from idempotency_keys where scope = $1 and key = $2',
    [scope, key],
  );
  return rows[0];
}

describe('sweepExpiredKeys', () => {
  it('removes exactly the 100,000 expired keys in one sweep and keeps the 10,000 live ones', async () => {
    await seedKeys(t.pool, { expired: 100_000, live: 10_000 });

    const result = await sweepExpiredKeys(t.db);

    expect(result).toMatchObject({ deleted: 100_000, batches: 101, stoppedBy: 'drained' });
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
    // Audit: what is left is the 10,000 live keys, every one of them.
    expect(await keyCounts(t.pool)).toEqual({ total: 10_000, expired: 0, live: 10_000 });
    expect(await count(t.pool, 'idempotency_keys', "key like 'live-%'")).toBe(10_000);
  });

  it('on a table with nothing expired, runs one empty batch and deletes nothing', async () => {
    await seedKeys(t.pool, { live: 100 });

    expect(await sweepExpiredKeys(t.db)).toMatchObject({ deleted: 0, batches: 1, stoppedBy: 'drained' });
    expect(await keyCounts(t.pool)).toEqual({ total: 100, expired: 0, live: 100 });
  });

  it('deletes in batches of batchSize and reports each batch to onBatch', async () => {
    await seedKeys(t.pool, { expired: 2_500, live: 10 });
    const progress: SweepProgress[] = [];

    const result = await sweepExpiredKeys(t.db, { batchSize: 1_000, onBatch: (p) => progress.push(p) });

    expect(result).toMatchObject({ deleted: 2_500, batches: 3, stoppedBy: 'drained' });
    expect(progress.map((p) => [p.batches, p.deleted])).toEqual([[1, 1_000], [2, 2_000], [3, 2_500]]);
    expect(await keyCounts(t.pool)).toEqual({ total: 10, expired: 0, live: 10 });
  });

  it('never deletes a key whose lease (locked_until) still runs, even past its expiry', async () => {
    await t.pool.query(`
      insert into idempotency_keys (key, status, expires_at, locked_until) values
        ('leased',       'started', now() - interval '1 hour', now() + interval '5 minutes'),
        ('lease-over',   'started', now() - interval '1 hour', now() - interval '1 minute'),
        ('no-lease',     'started', now() - interval '1 hour', null),
        ('live-leased',  'started', now() + interval '1 hour', now() + interval '5 minutes')`);

    expect(await sweepExpiredKeys(t.db)).toMatchObject({ deleted: 2 });

    const { rows } = await t.pool.query<{ key: string }>('select key from idempotency_keys order by key');
    expect(rows.map((r) => r.key)).toEqual(['leased', 'live-leased']);
  });

  it('skips an expired key a writer is reclaiming right now, without waiting for it; the writer keeps it', async () => {
    await seedKeys(t.pool, { expired: 1_000 });
    const claimed = deferred();
    const release = deferred();
    // A writer reclaims expired-500 (its claim's UPDATE locks the row) and holds its transaction open.
    const writer = withIdempotencyOutcome(t.db, 'expired-500', async (tx) => {
      claimed.resolve();
      await release.promise;
      return insertCharge(tx, 'expired-500', 7);
    });
    await claimed.promise;

    const result = await sweepExpiredKeys(t.db);
    release.resolve();
    const outcome = await writer;

    expect(result).toMatchObject({ deleted: 999, stoppedBy: 'drained' });
    expect(outcome.replayed).toBe(false);
    // Audit: the reclaimed key survived the sweep with the writer's result, and replays it.
    expect(await keyRow('expired-500')).toEqual({ status: 'completed', response: { value: outcome.value }, live: true });
    expect(await keyCounts(t.pool)).toEqual({ total: 1, expired: 0, live: 1 });
    const again = await withIdempotencyOutcome(t.db, 'expired-500', (tx) => insertCharge(tx, 'expired-500', 7));
    expect(again).toEqual({ value: outcome.value, replayed: true });
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  it('works on a table in a named schema', async () => {
    await migrate(t.db, { schema: 'billing' });
    await seedKeys(t.pool, { expired: 300, live: 3, schema: 'billing' });
    await seedKeys(t.pool, { expired: 5 });

    expect(await sweepExpiredKeys(t.db, { schema: 'billing' })).toMatchObject({ deleted: 300 });

    expect(await keyCounts(t.pool, 'billing')).toEqual({ total: 3, expired: 0, live: 3 });
    // Audit: the table in the search_path was not touched.
    expect(await keyCounts(t.pool)).toEqual({ total: 5, expired: 5, live: 0 });
  });
});

describe('stopping a sweep', () => {
  it('stops between batches when its signal aborts, and says so', async () => {
    await seedKeys(t.pool, { expired: 5_000 });
    const abort = new AbortController();

    const result = await sweepExpiredKeys(t.db, {
      batchSize: 1_000,
      signal: abort.signal,
      onBatch: (p) => p.batches === 2 && abort.abort(),
    });

    expect(result).toMatchObject({ deleted: 2_000, batches: 2, stoppedBy: 'aborted' });
    expect(await keyCounts(t.pool)).toEqual({ total: 3_000, expired: 3_000, live: 0 });
  });

  it('with an already aborted signal, runs no batch at all', async () => {
    await seedKeys(t.pool, { expired: 10 });

    const result = await sweepExpiredKeys(t.db, { signal: AbortSignal.abort() });

    expect(result).toMatchObject({ deleted: 0, batches: 0, stoppedBy: 'aborted' });
    expect(await keyCounts(t.pool)).toEqual({ total: 10, expired: 10, live: 0 });
  });

  it('starts no new batch once its time budget is spent', async () => {
    await seedKeys(t.pool, { expired: 5_000 });

    const result = await sweepExpiredKeys(t.db, {
      batchSize: 100,
      timeBudget: 50,
      // Slow every batch down so that the budget, not the table, ends the sweep.
      onBatch: () => {
        const until = performance.now() + 20;
        while (performance.now() < until);
      },
    });

    expect(result.stoppedBy).toBe('timeBudget');
    expect(result.batches).toBeGreaterThanOrEqual(1);
    expect(result.batches).toBeLessThanOrEqual(4);
    expect(result.deleted).toBe(result.batches * 100);
    expect(await keyCounts(t.pool)).toEqual({ total: 5_000 - result.deleted, expired: 5_000 - result.deleted, live: 0 });
  });
});

describe('bad options', () => {
  const bad: [string, unknown][] = [
    ['batchSize 0', { batchSize: 0 }],
    ['a fractional batchSize', { batchSize: 1.5 }],
    ['a batchSize as text', { batchSize: '1000' }],
    ['a batchSize over the bound', { batchSize: 1_000_000 }],
    ['an unreadable timeBudget', { timeBudget: 'soon' }],
    ['a negative timeBudget', { timeBudget: -5 }],
    ['a signal that is not an AbortSignal', { signal: { aborted: false } }],
    ['a schema that is not an identifier', { schema: 'billing; drop table x' }],
    ['an onBatch that is not a function', { onBatch: 'log' }],
  ];
  it.each(bad)('%s: IDEMPOTENCY_OPTIONS_INVALID, and nothing is deleted', async (_name, options) => {
    await seedKeys(t.pool, { expired: 10 });

    await expect(sweepExpiredKeys(t.db, options as never)).rejects.toMatchObject({
      name: 'IdempotencyOptionsInvalidError',
      code: 'IDEMPOTENCY_OPTIONS_INVALID',
    });
    expect(await keyCounts(t.pool)).toEqual({ total: 10, expired: 10, live: 0 });
  });

  it('a transaction instead of a database: IDEMPOTENCY_OPTIONS_INVALID (a batch must commit on its own), nothing deleted', async () => {
    await seedKeys(t.pool, { expired: 10 });

    await t.db.transaction(async (tx) => {
      await expect(sweepExpiredKeys(tx)).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    });
    expect(await keyCounts(t.pool)).toEqual({ total: 10, expired: 10, live: 0 });
  });
});

describe('sweeping alongside others', () => {
  it('two sweepers at once: no errors, and their counts add up to the expired total', async () => {
    await seedKeys(t.pool, { expired: 100_000, live: 10_000 });
    const a = drizzle({ client: t.newPool(2) });
    const b = drizzle({ client: t.newPool(2) });

    const [ra, rb] = await Promise.all([sweepExpiredKeys(a, { batchSize: 500 }), sweepExpiredKeys(b, { batchSize: 500 })]);

    expect(ra.deleted + rb.deleted).toBe(100_000);
    expect([ra.stoppedBy, rb.stoppedBy]).toEqual(['drained', 'drained']);
    expect(await keyCounts(t.pool)).toEqual({ total: 10_000, expired: 0, live: 10_000 });
  });

  it('while writers and replays run: every live key replays, and a reclaimed expired key is neither lost nor resurrected', async () => {
    const LIVE = 100;
    const STALE = 200;
    // 100,000 expired rows keep the sweep busy; the 200 stale keys expired at
    // times spread among them, so the sweep reaches them while writers reclaim them.
    await seedKeys(t.pool, { expired: 100_000, scope: 'filler' });
    await t.pool.query(
      `insert into idempotency_keys (scope, key, status, response, expires_at)
       select 'shop', 'stale-' || i, 'completed', jsonb_build_object('value', 'stale answer ' || i),
              now() - interval '1 hour' - i * interval '500 milliseconds'
       from generate_series(1, $1) as i`,
      [STALE],
    );
    const firstAnswers = new Map<string, unknown>();
    for (let i = 1; i <= LIVE; i++) {
      const { value } = await withIdempotencyOutcome(t.db, `live-${i}`, (tx) => insertCharge(tx, `live-${i}`, i), { scope: 'shop' });
      firstAnswers.set(`live-${i}`, value);
    }
    const chargesBefore = await count(t.pool, 'charges');
    const writers = drizzle({ client: t.newPool(8) });
    const neverRuns = async (): Promise<never> => {
      throw new Error('fn ran for a live key');
    };

    let sweeping = true;
    const sweep = sweepExpiredKeys(t.db, { batchSize: 500 }).finally(() => (sweeping = false));
    const replayer = async () => {
      let rounds = 0;
      while (sweeping || rounds === 0) {
        for (let i = 1; i <= LIVE; i += 7) {
          const outcome = await withIdempotencyOutcome(writers, `live-${i}`, neverRuns, { scope: 'shop' });
          expect(outcome).toEqual({ value: firstAnswers.get(`live-${i}`), replayed: true });
        }
        rounds++;
      }
      return rounds;
    };
    const stale = Array.from({ length: STALE }, (_, i) => `stale-${i + 1}`);
    const reclaimed = new Map<string, unknown>();
    const reclaimer = async () => {
      for (let key = stale.shift(); key !== undefined; key = stale.shift()) {
        const first = await withIdempotencyOutcome(writers, key, (tx) => insertCharge(tx, key, 1), { scope: 'shop' });
        expect(first.replayed).toBe(false);
        reclaimed.set(key, first.value);
        const retry = await withIdempotencyOutcome(writers, key, (tx) => insertCharge(tx, key, 1), { scope: 'shop' });
        expect(retry).toEqual({ value: first.value, replayed: true });
      }
    };

    const [result] = await Promise.all([sweep, replayer(), replayer(), reclaimer(), reclaimer(), reclaimer()]);

    // The filler is gone; of the stale keys, the sweep deleted those it reached before a writer did.
    expect(result.deleted).toBeGreaterThanOrEqual(100_000);
    expect(result.deleted).toBeLessThanOrEqual(100_000 + STALE);
    expect(await count(t.pool, 'idempotency_keys', "scope = 'filler'")).toBe(0);
    // Audit, live keys: each row is intact, and its effect happened once.
    for (const [key, value] of firstAnswers) {
      expect(await keyRow(key, 'shop')).toEqual({ status: 'completed', response: { value }, live: true });
    }
    // Audit, reclaimed keys: each one holds the new answer (not the stale one), lives, and charged once.
    expect(reclaimed.size).toBe(STALE);
    for (const [key, value] of reclaimed) {
      expect(await keyRow(key, 'shop')).toEqual({ status: 'completed', response: { value }, live: true });
    }
    expect(await count(t.pool, 'charges')).toBe(chargesBefore + STALE);
    expect(await count(t.pool, 'charges', "ref like 'stale-%'")).toBe(STALE);
    expect(await count(t.pool, '(select distinct ref from charges) as refs', "ref like 'stale-%'")).toBe(STALE);
    expect(await keyCounts(t.pool)).toEqual({ total: LIVE + STALE, expired: 0, live: LIVE + STALE });
  });
});

describe('the database clock', () => {
  it('alone decides what has expired: an application clock a day ahead changes nothing', async () => {
    await seedKeys(t.pool, { expired: 10, live: 10 });
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 86_400_000 * 2 });
    try {
      expect(await sweepExpiredKeys(t.db)).toMatchObject({ deleted: 10 });
    } finally {
      vi.useRealTimers();
    }
    expect(await keyCounts(t.pool)).toEqual({ total: 10, expired: 0, live: 10 });
  });
});

/** A leased workflow's key, started, its lease and its TTL long gone: the completer's to finish, never the sweep's to delete. */
async function insertAbandonedWorkflow(): Promise<void> {
  await t.pool.query(
    `insert into idempotency_keys (key, status, created_at, expires_at, locked_until, owner_token, workflow, steps, recovery_point, attempts)
     values ('abandoned-workflow', 'started', now() - interval '2 days', now() - interval '1 day', now() - interval '1 day', gen_random_uuid(), 'shop.pay',
             '{"charge": {"value": {"id": "ch_1"}}}', 'charge', 1)`,
  );
}

describe("a leased workflow's unfinished key", () => {
  it('is never swept, however long ago its lease and its TTL ran out', async () => {
    await insertAbandonedWorkflow();
    await sweepExpiredKeys(t.db);
    expect(await count(t.pool, 'idempotency_keys', "key = 'abandoned-workflow' and status = 'started'")).toBe(1);
    await t.pool.query(`delete from idempotency_keys where key = 'abandoned-workflow'`);
  });
});

describe('the pg_cron job in the README', () => {
  it('is the same sweep: deletes expired keys (10,000 a run), never live or leased ones', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const job = /cron\.schedule\('idempotency-keys-sweep', '[^']+', \$\$([\s\S]+?)\$\$\)/.exec(readme)?.[1];
    expect(job).toBeDefined();
    await seedKeys(t.pool, { expired: 12_000, live: 50 });
    await t.pool.query(
      "insert into idempotency_keys (key, status, expires_at, locked_until) values ('leased', 'started', now() - interval '1 hour', now() + interval '5 minutes')",
    );
    await insertAbandonedWorkflow();

    const first = await t.pool.query(job!);
    const second = await t.pool.query(job!);

    expect([first.rowCount, second.rowCount]).toEqual([10_000, 2_000]);
    expect(await keyCounts(t.pool)).toEqual({ total: 52, expired: 2, live: 50 });
    expect(await count(t.pool, 'idempotency_keys', "key in ('leased', 'abandoned-workflow')")).toBe(2);
    await t.pool.query(`delete from idempotency_keys where key = 'abandoned-workflow'`);
  });
});
