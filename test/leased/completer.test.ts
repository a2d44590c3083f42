import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { completeAbandonedKeys, defineWorkflow, runWorkflow, startCompleter, type CompleteResult } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { settled } from '../support/processes.js';
import { keysByStatus } from '../support/leased-shop.js';

const t = await testDatabase();
beforeAll(() => t.pool.query(`create table runs (key text not null, attempt integer not null)`));

const LEASE = '400ms';
// How often each key's finishing step ran its fn, committed or not: in memory, across both completers.
const finishes = new Map<string, number>();

/** A workflow whose first run fails after its first step (the client gave up), leaving the key abandoned. */
const abandoning = defineWorkflow(
  'test.abandoned',
  async (ctx, input: { key: string }) => {
    await ctx.step('start', async () => 'started');
    if (ctx.attempt === 1) throw new Error('the client went away');
    await ctx.call('external', () => new Promise((resolve) => setTimeout(() => resolve('slow'), 30)));
    return ctx.step('finish', async (tx) => {
      finishes.set(input.key, (finishes.get(input.key) ?? 0) + 1);
      await tx.execute(sql`insert into runs (key, attempt) values (${input.key}, ${ctx.attempt})`);
      return { finishedBy: ctx.attempt };
    });
  },
  { lease: LEASE },
);

async function abandon(keys: string[]): Promise<void> {
  for (const key of keys) await expect(runWorkflow(t.db, key, abandoning, { key })).rejects.toThrow('the client went away');
}

const sum = (results: CompleteResult[]) =>
  results.reduce((a, r) => ({ completed: a.completed + r.completed, failed: a.failed + r.failed, retried: a.retried + r.retried, skipped: a.skipped + r.skipped }));

describe('completeAbandonedKeys', () => {
  it('run by two completers on two pools over the same keys, finishes every key exactly once and leaves none started', async () => {
    const keys = Array.from({ length: 24 }, (_, i) => `two-${i}`);
    await abandon(keys);
    const one = drizzle({ client: t.newPool(6) });
    const two = drizzle({ client: t.newPool(6) });
    const results = await Promise.all([completeAbandonedKeys(one, [abandoning]), completeAbandonedKeys(two, [abandoning])]);

    expect(sum(results)).toMatchObject({ completed: keys.length, failed: 0, retried: 0 });
    const { rows } = await t.pool.query<{ key: string; n: number }>(`select key, count(*)::int as n from runs where key like 'two-%' group by key order by key`);
    expect(rows.map((r) => r.n)).toEqual(keys.map(() => 1));
    expect(keys.map((key) => finishes.get(key))).toEqual(keys.map(() => 1));
    expect(await keysByStatus(t.pool)).toEqual({ completed: keys.length });
    // A client's retry now replays what the completer stored.
    expect(await runWorkflow(t.db, keys[0]!, abandoning, { key: keys[0]! })).toEqual({ finishedBy: 2 });
  });

  it('once its signal is aborted starts no key, leaving each abandoned for a later pass, and refuses a signal that is not an AbortSignal', async () => {
    const keys = ['aborted-0', 'aborted-1', 'aborted-2'];
    await abandon(keys);
    const inDatabase = () => t.pool.query(`select key, status, attempts from idempotency_keys where key like 'aborted-%' order by key`).then((r) => r.rows);
    const before = await inDatabase();

    expect(await completeAbandonedKeys(t.db, [abandoning], { signal: AbortSignal.abort() })).toEqual({ completed: 0, failed: 0, retried: 0, skipped: 0 });
    const refused = await completeAbandonedKeys(t.db, [abandoning], { signal: { aborted: true } as AbortSignal }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID', message: expect.stringContaining('signal must be an AbortSignal') });
    expect(await inDatabase()).toEqual(before);
    expect(before.map((r) => r.status)).toEqual(['started', 'started', 'started']);

    // A later pass finishes them, each once.
    expect(await completeAbandonedKeys(t.db, [abandoning])).toMatchObject({ completed: keys.length });
    const { rows } = await t.pool.query<{ n: number }>(`select count(*)::int as n from runs where key like 'aborted-%' group by key order by key`);
    expect(rows.map((r) => r.n)).toEqual([1, 1, 1]);
  });

  it('leaves alone keys whose lease still runs and keys of workflows it was not given', async () => {
    const other = defineWorkflow('test.other', async (ctx) => {
      await ctx.step('start', async () => 1);
      throw new Error('fails');
    });
    await expect(runWorkflow(t.db, 'other-1', other, null)).rejects.toThrow('fails');
    expect(await completeAbandonedKeys(t.db, [abandoning])).toEqual({ completed: 0, failed: 0, retried: 0, skipped: 0 });
    const { rows } = await t.pool.query(`select status from idempotency_keys where key = 'other-1'`);
    expect(rows).toEqual([{ status: 'started' }]);
  });

  it("resumes with the workflow's own maxResultBytes (2 MiB here), as a client's run does: a 1.5 MiB result completes, not fails", async () => {
    const big = 'x'.repeat(1.5 * 1024 * 1024);
    const large = defineWorkflow(
      'test.large',
      async (ctx) => {
        const text = await ctx.step('render', async () => big);
        if (ctx.attempt === 1) throw new Error('the client went away');
        return { text };
      },
      { lease: LEASE, maxResultBytes: 2 * 1024 * 1024 },
    );
    await expect(runWorkflow(t.db, 'large', large, null)).rejects.toThrow('the client went away');
    const errors: unknown[] = [];
    expect(await completeAbandonedKeys(t.db, [large], { onError: (e) => errors.push(e) })).toEqual({ completed: 1, failed: 0, retried: 0, skipped: 0 });
    expect(errors).toEqual([]);
    const { rows } = await t.pool.query(`select status, attempts, octet_length(response::text) > 1500000 as large from idempotency_keys where key = 'large'`);
    expect(rows).toEqual([{ status: 'completed', attempts: 2, large: true }]);
    expect((await runWorkflow(t.db, 'large', large, null)).text).toHaveLength(big.length);
  });

  it("refuses a result over the workflow's maxResultBytes in a client's run and in the completer alike: the key stays started", async () => {
    const small = defineWorkflow(
      'test.small',
      async (ctx) => {
        if (ctx.attempt === 1) throw new Error('the client went away');
        return 'y'.repeat(4096);
      },
      { lease: LEASE, maxResultBytes: 1024 },
    );
    await expect(runWorkflow(t.db, 'small', small, null)).rejects.toThrow('the client went away');
    const errors: unknown[] = [];
    expect(await completeAbandonedKeys(t.db, [small], { onError: (e) => errors.push(e) })).toEqual({ completed: 0, failed: 0, retried: 1, skipped: 0 });
    expect(errors).toMatchObject([{ code: 'IDEMPOTENCY_RESULT_INVALID' }]);
    await expect(runWorkflow(t.db, 'small', small, null)).rejects.toMatchObject({ code: 'IDEMPOTENCY_RESULT_INVALID' });
    const { rows } = await t.pool.query(`select status, attempts from idempotency_keys where key = 'small'`);
    expect(rows).toEqual([{ status: 'started', attempts: 3 }]);
  });

  it('records a key that is out of attempts as failed', async () => {
    const hopeless = defineWorkflow(
      'test.hopeless',
      async () => {
        throw new Error('always');
      },
      { maxAttempts: 2, lease: LEASE },
    );
    await expect(runWorkflow(t.db, 'hopeless', hopeless, null)).rejects.toThrow('always');
    const errors: unknown[] = [];
    const result = await completeAbandonedKeys(t.db, [hopeless], { onError: (e) => errors.push(e) });
    expect(result).toEqual({ completed: 0, failed: 1, retried: 0, skipped: 0 });
    expect(errors).toMatchObject([{ code: 'IDEMPOTENCY_WORKFLOW_FAILED' }]);
    const { rows } = await t.pool.query(`select status, attempts from idempotency_keys where key = 'hopeless'`);
    expect(rows).toEqual([{ status: 'failed', attempts: 2 }]);
  });
});

describe('startCompleter', () => {
  it('keeps finishing abandoned keys on its interval, two of them at once, and stops cleanly', async () => {
    const keys = Array.from({ length: 10 }, (_, i) => `loop-${i}`);
    const passes: CompleteResult[] = [];
    const a = startCompleter(drizzle({ client: t.newPool(4) }), [abandoning], { interval: '50ms', onPass: (r) => passes.push(r) });
    const b = startCompleter(drizzle({ client: t.newPool(4) }), [abandoning], { interval: '50ms', onPass: (r) => passes.push(r) });
    try {
      await abandon(keys);
      const done = await settled(
        () => t.pool.query<{ n: number }>(`select count(*)::int as n from idempotency_keys where key like 'loop-%' and status = 'completed'`),
        (r) => r.rows[0]!.n === keys.length,
        10_000,
      );
      expect(done.rows[0]!.n).toBe(keys.length);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
    expect(sum(passes).completed).toBe(keys.length);
    const { rows } = await t.pool.query<{ n: number }>(`select count(*)::int as n from runs where key like 'loop-%'`);
    expect(rows[0]!.n).toBe(keys.length);
    expect((await keysByStatus(t.pool)).started ?? 0).toBe(2); // the keys of test.other and test.small, which these completers were not given
  });
});
