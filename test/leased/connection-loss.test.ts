import { sql } from 'drizzle-orm';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { completeAbandonedKeys, defineWorkflow, IdempotencyConnectionLostError, runWorkflow } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { sleep } from '../support/fixtures.js';

const t = await testDatabase();

/** Terminates the first backend of this database found running a statement like `pattern`. */
async function killWhenRunning(pattern: string, spare?: pg.PoolClient): Promise<void> {
  for (;;) {
    const { rows } = await t.pool.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and pid <> $2 and state = 'active' and query ilike $1`,
      [pattern, (spare as unknown as { processID?: number } | undefined)?.processID ?? 0],
    );
    if (rows.length > 0) return;
    await sleep(5);
  }
}

async function keyRow(key: string) {
  const { rows } = await t.pool.query(`select status, steps, attempts from idempotency_keys where key = $1`, [key]);
  return rows;
}

describe('a database connection lost under leased work', () => {
  it('in a local step, even on the last attempt: IDEMPOTENCY_CONNECTION_LOST, the step rolled back, the key stays started (never failed), and a retry resumes and runs it once', async () => {
    let runs = 0;
    const slowStep = defineWorkflow(
      'test.lost-in-step',
      async (ctx) =>
        ctx.step('write', async (tx) => {
          runs++;
          if (runs === 1) await tx.execute(sql`select pg_sleep(5)`);
          return 'written';
        }),
      { maxAttempts: 1 },
    );
    const first = runWorkflow(t.db, 'lost-in-step', slowStep, null).catch((e: unknown) => e);
    await killWhenRunning('%pg_sleep%');
    expect(await first).toBeInstanceOf(IdempotencyConnectionLostError);
    expect(await keyRow('lost-in-step')).toEqual([{ status: 'started', steps: {}, attempts: 1 }]);
    expect(await runWorkflow(t.db, 'lost-in-step', slowStep, null)).toBe('written');
    expect(runs).toBe(2);
    expect(await keyRow('lost-in-step')).toEqual([{ status: 'completed', steps: { write: { value: 'written' } }, attempts: 2 }]);
  });

  it('in the claim: IDEMPOTENCY_CONNECTION_LOST, nothing claimed, and a retry runs the work once', async () => {
    let runs = 0;
    const once = defineWorkflow('test.lost-in-claim', async () => ++runs);
    // An in-transaction claim of the key, not committed: the leased claim waits on it.
    const holder = await t.pool.connect();
    await holder.query('begin');
    await holder.query(`insert into idempotency_keys (scope, key, status, expires_at) values ('', 'lost-in-claim', 'started', now() + interval '1 hour')`);
    const first = runWorkflow(t.db, 'lost-in-claim', once, null).catch((e: unknown) => e);
    await killWhenRunning('insert into%owner_token%', holder);
    expect(await first).toBeInstanceOf(IdempotencyConnectionLostError);
    await holder.query('rollback');
    holder.release();
    expect(runs).toBe(0);
    expect(await runWorkflow(t.db, 'lost-in-claim', once, null)).toBe(1);
    expect(await keyRow('lost-in-claim')).toEqual([{ status: 'completed', steps: {}, attempts: 1 }]);
  });

  it("in the completer: onError hears IDEMPOTENCY_CONNECTION_LOST, and the next pass finishes the key", async () => {
    let runs = 0;
    const slowStep = defineWorkflow('test.lost-in-completer', async (ctx) => {
      if (ctx.attempt === 1) throw new Error('crashed');
      return ctx.step('write', async (tx) => {
        runs++;
        if (runs === 1) await tx.execute(sql`select pg_sleep(5)`);
        return 'written';
      });
    });
    await expect(runWorkflow(t.db, 'lost-in-completer', slowStep, null)).rejects.toThrow('crashed');
    const errors: unknown[] = [];
    const pass = completeAbandonedKeys(t.db, [slowStep], { onError: (e) => errors.push(e) });
    await killWhenRunning('%pg_sleep%');
    expect(await pass).toEqual({ completed: 0, failed: 0, retried: 1, skipped: 0 });
    expect(errors).toEqual([expect.any(IdempotencyConnectionLostError)]);
    expect(await completeAbandonedKeys(t.db, [slowStep])).toEqual({ completed: 1, failed: 0, retried: 0, skipped: 0 });
    expect(runs).toBe(2);
    expect(await keyRow('lost-in-completer')).toEqual([{ status: 'completed', steps: { write: { value: 'written' } }, attempts: 3 }]);
  });
});
