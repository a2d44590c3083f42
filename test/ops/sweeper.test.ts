import type { SQLWrapper } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IdempotencyOptionsInvalidError, startSweeper, type IdempotencyDatabase, type Sweeper, type SweepResult } from '../../src/index.js';
import { sqlState } from '../../src/driver/pg-error.js';
import { testDatabase } from '../support/db.js';
import { deferred, sleep } from '../support/fixtures.js';
import { keyCounts, seedKeys } from '../support/seed.js';

const t = await testDatabase();

/** The real database, with a count of its statements in flight at once. */
function watched(db: IdempotencyDatabase) {
  const stats = { inFlight: 0, maxInFlight: 0, statements: 0 };
  const wrapper: IdempotencyDatabase = {
    async execute(query: SQLWrapper) {
      stats.statements++;
      stats.maxInFlight = Math.max(stats.maxInFlight, ++stats.inFlight);
      try {
        return await db.execute(query);
      } finally {
        stats.inFlight--;
      }
    },
    transaction: (fn, config) => db.transaction(fn, config),
  };
  return { db: wrapper, stats };
}

/** Resolves once `predicate` holds, polling; fails the test after `ms`. */
async function until(predicate: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(5);
  }
}

let sweepers: Sweeper[] = [];
const track = (s: Sweeper) => (sweepers.push(s), s);

beforeEach(async () => {
  await t.pool.query('truncate idempotency_keys');
});
afterEach(async () => {
  await Promise.all(sweepers.map((s) => s.stop()));
  sweepers = [];
});

describe('startSweeper', () => {
  it('sweeps every `every` until stopped, then never again', async () => {
    await seedKeys(t.pool, { expired: 1_000, live: 10 });
    const results: SweepResult[] = [];

    const sweeper = track(startSweeper(t.db, { every: '20ms', immediate: true, onSweep: (r) => results.push(r) }));
    await until(() => results.length >= 3);
    await sweeper.stop();
    const sweepsAtStop = results.length;
    await sleep(100);

    expect(results[0]).toMatchObject({ deleted: 1_000, stoppedBy: 'drained' });
    expect(results.slice(1).every((r) => r.deleted === 0)).toBe(true);
    expect(results.length).toBe(sweepsAtStop);
    expect(await keyCounts(t.pool)).toEqual({ total: 10, expired: 0, live: 10 });
  });

  it('waits `every` before the first sweep unless told `immediate`', async () => {
    await seedKeys(t.pool, { expired: 10 });
    const results: SweepResult[] = [];

    track(startSweeper(t.db, { every: '200ms', onSweep: (r) => results.push(r) }));
    await sleep(100);
    expect(results).toHaveLength(0);
    expect(await keyCounts(t.pool)).toMatchObject({ expired: 10 });
    await until(() => results.length === 1);

    expect(await keyCounts(t.pool)).toEqual({ total: 0, expired: 0, live: 0 });
  });

  it('never overlaps two sweeps, even when a sweep takes longer than `every`', async () => {
    await seedKeys(t.pool, { expired: 20_000 });
    const { db, stats } = watched(t.db);
    const results: SweepResult[] = [];

    track(startSweeper(db, { every: 1, immediate: true, batchSize: 100, onSweep: (r) => results.push(r) }));
    await until(() => results.length >= 3);

    expect(stats.maxInFlight).toBe(1);
    expect(results[0]).toMatchObject({ deleted: 20_000, batches: 201 });
    expect(await keyCounts(t.pool)).toEqual({ total: 0, expired: 0, live: 0 });
  });

  it('reports a failing sweep to onError, never to the event loop, and carries on', async () => {
    const errors: unknown[] = [];

    track(startSweeper(t.db, { every: 10, immediate: true, schema: 'nowhere', onError: (e) => errors.push(e) }));
    await until(() => errors.length >= 3);

    expect(errors.every((e) => sqlState(e) === '42P01')).toBe(true);
    // Audit: the sweeper touched nothing else.
    expect(await keyCounts(t.pool)).toEqual({ total: 0, expired: 0, live: 0 });
  });

  it('survives hooks that throw: an onSweep error goes to onError, an onError error is dropped', async () => {
    await seedKeys(t.pool, { expired: 5 });
    const seen: unknown[] = [];
    let sweeps = 0;

    track(
      startSweeper(t.db, {
        every: 10,
        immediate: true,
        onSweep: () => {
          sweeps++;
          throw new Error('onSweep broke');
        },
        onError: (e) => {
          seen.push(e);
          throw new Error('onError broke too');
        },
      }),
    );
    await until(() => sweeps >= 3);

    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect((seen[0] as Error).message).toBe('onSweep broke');
    expect(await keyCounts(t.pool)).toEqual({ total: 0, expired: 0, live: 0 });
  });

  it('stop() ends a running sweep between batches and resolves once it has', async () => {
    await seedKeys(t.pool, { expired: 50_000 });
    const { db, stats } = watched(t.db);
    const firstBatch = deferred();
    const results: SweepResult[] = [];

    const sweeper = startSweeper(db, { every: '1h', immediate: true, batchSize: 100, onBatch: () => firstBatch.resolve(), onSweep: (r) => results.push(r) });
    await firstBatch.promise;
    const stopping = sweeper.stop();

    expect(sweeper.stop()).toBe(stopping);
    await stopping;
    expect(stats.inFlight).toBe(0);
    expect(results).toHaveLength(1);
    expect(results[0]!.stoppedBy).toBe('aborted');
    // Audit: it stopped early, and deleted exactly what it reported.
    const left = await keyCounts(t.pool);
    expect(left.expired).toBeGreaterThan(0);
    expect(left.expired).toBe(50_000 - results[0]!.deleted);
  });

  it('keeps no timer that holds the process open', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();

    const sweeper = track(startSweeper(t.db, { every: '1h' }));

    expect(timers()).toBe(before);
    await sweeper.stop();
    expect(await keyCounts(t.pool)).toEqual({ total: 0, expired: 0, live: 0 });
  });
});

describe('startSweeper with bad options', () => {
  const bad: [string, unknown][] = [
    ['no options', undefined],
    ['no every', {}],
    ['an unreadable every', { every: 'often' }],
    ['every 0', { every: 0 }],
    // Past 2^31 - 1 ms Node fires a timer after 1 ms: a sweep every millisecond.
    ['an every past a timer\'s limit (25 days)', { every: '25d' }],
    ['an every of 2^31 ms', { every: 2 ** 31 }],
    ['batchSize 0', { every: '1m', batchSize: 0 }],
    ['an onError that is not a function', { every: '1m', onError: 'log' }],
    ['an onSweep that is not a function', { every: '1m', onSweep: 42 }],
    ['a bad schema', { every: '1m', schema: 'a.b' }],
  ];
  it.each(bad)('%s: throws IDEMPOTENCY_OPTIONS_INVALID at once and starts nothing', async (_name, options) => {
    await seedKeys(t.pool, { expired: 3 });
    const timers = process.getActiveResourcesInfo().length;

    expect(() => startSweeper(t.db, options as never)).toThrow(IdempotencyOptionsInvalidError);

    expect(process.getActiveResourcesInfo().length).toBe(timers);
    await sleep(20);
    expect(await keyCounts(t.pool)).toEqual({ total: 3, expired: 3, live: 0 });
  });

  it('a transaction instead of a database: IDEMPOTENCY_OPTIONS_INVALID', async () => {
    await t.db.transaction(async (tx) => {
      expect(() => startSweeper(tx, { every: '1m' })).toThrow(IdempotencyOptionsInvalidError);
    });
    expect(await keyCounts(t.pool)).toEqual({ total: 0, expired: 0, live: 0 });
  });
});
