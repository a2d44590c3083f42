import { describe, expect, it, onTestFinished } from 'vitest';
import { defineWorkflow, IdempotencyOptionsInvalidError, runWorkflow, type WorkflowContext } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { deferred } from '../support/fixtures.js';
import { settled } from '../support/processes.js';

const t = await testDatabase();

async function keyRow(key: string) {
  const { rows } = await t.pool.query(
    `select status, steps, recovery_point, locked_until <= now() as released from idempotency_keys where key = $1`,
    [key],
  );
  return rows;
}

describe('a workflow context used where it cannot hold the key', () => {
  it('refuses a step nested in a local step (its transaction holds the key row: it would wait on itself forever), and rolls the outer step back', async () => {
    let inner = 0;
    const nested = defineWorkflow('test.nested-step', async (ctx) =>
      ctx.step('outer', async () =>
        ctx.step('inner', async () => {
          inner++;
          return 1;
        }),
      ),
    );
    await expect(runWorkflow(t.db, 'nested-step', nested, null)).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(inner).toBe(0);
    expect(await keyRow('nested-step')).toEqual([{ status: 'started', steps: {}, recovery_point: null, released: true }]);
  });

  it('refuses an external call nested in a local step, before the call runs', async () => {
    let called = 0;
    const nested = defineWorkflow('test.nested-call', async (ctx) =>
      ctx.step('outer', async () =>
        ctx.call('charge', async () => {
          called++;
          return 'ch_1';
        }),
      ),
    );
    await expect(runWorkflow(t.db, 'nested-call', nested, null)).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(called).toBe(0);
    expect(await keyRow('nested-call')).toEqual([{ status: 'started', steps: {}, recovery_point: null, released: true }]);
  });

  it('still runs two steps of one run at once (Promise.all): each waits for the other to commit', async () => {
    const both = defineWorkflow('test.parallel', async (ctx) => Promise.all([ctx.step('a', async () => 1), ctx.step('b', async () => 2)]));
    expect(await runWorkflow(t.db, 'parallel', both, null)).toEqual([1, 2]);
    expect(await keyRow('parallel')).toEqual([{ status: 'completed', steps: { a: { value: 1 }, b: { value: 2 } }, recovery_point: expect.any(String), released: null }]);
  });

  it('refuses a step after the run failed: nothing runs, and the released lease stays released', async () => {
    let kept: WorkflowContext | undefined;
    let late = 0;
    const failing = defineWorkflow('test.kept-context', async (ctx) => {
      kept = ctx;
      throw new Error('declined');
    });
    await expect(runWorkflow(t.db, 'kept-context', failing, null)).rejects.toThrow('declined');
    await expect(kept!.step('late', async () => ++late)).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    await expect(kept!.call('late-call', async () => ++late)).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(late).toBe(0);
    expect(await keyRow('kept-context')).toEqual([{ status: 'started', steps: {}, recovery_point: null, released: true }]);
  });

  it("fences a call still running when the run failed: its late result cannot take the released lease back", async () => {
    const answer = deferred<string>();
    const started = deferred();
    const racing = defineWorkflow('test.orphan-call', async (ctx) => {
      const orphan = ctx.call('charge', async () => {
        started.resolve();
        return answer.promise;
      });
      orphan.catch(() => {});
      await started.promise;
      throw new Error('declined');
    });
    await expect(runWorkflow(t.db, 'orphan-call', racing, null)).rejects.toThrow('declined');
    answer.resolve('ch_late');
    // Let the orphan's write reach the database, if it can.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await keyRow('orphan-call')).toEqual([{ status: 'started', steps: {}, recovery_point: null, released: true }]);
    // A retry resumes at once (the lease is released), and runs the call again with the same downstream key.
    const resumed = defineWorkflow('test.orphan-call', async (ctx) => ctx.call('charge', async () => 'ch_again'));
    expect(await runWorkflow(t.db, 'orphan-call', resumed, null, { onInFlight: 'reject' })).toBe('ch_again');
    expect(await keyRow('orphan-call')).toEqual([{ status: 'completed', steps: { charge: { value: 'ch_again' } }, recovery_point: 'charge', released: null }]);
  });

  it.each([
    ['releasing the lease', 5],
    ['recording the last attempt as failed', 1],
  ])("gives up %s when an orphaned local step of the run still holds the key row, and delivers the run's own error", async (_what, maxAttempts) => {
    const key = `orphan-step-${maxAttempts}`;
    const stepDone = deferred();
    const inside = deferred();
    let runs = 0;
    const racing = defineWorkflow(
      `test.orphan-step-${maxAttempts}`,
      async (ctx) => {
        // Not awaited: its transaction locks the key row and stays open after the run threw.
        const orphan = ctx.step('slow', async () => {
          runs++;
          inside.resolve();
          await stepDone.promise;
          return 'late';
        });
        orphan.catch(() => {});
        await inside.promise;
        throw new Error('declined');
      },
      { lease: '500ms', maxAttempts },
    );
    onTestFinished(() => stepDone.resolve());
    // Unbounded, the release (or the failure record) would wait on the orphan's row lock for ever.
    await expect(runWorkflow(t.db, key, racing, null)).rejects.toThrow('declined');
    stepDone.resolve();
    // The orphan still held the lease: its step commits, and the key stays started (never failed blind).
    const committed = await settled(() => keyRow(key), (rows) => rows[0]?.recovery_point === 'slow', 5_000);
    expect(committed).toEqual([{ status: 'started', steps: { slow: { value: 'late' } }, recovery_point: 'slow', released: expect.any(Boolean) }]);
    // Once the lease ran out, a retry resumes: the committed step does not run again.
    const resumed = defineWorkflow(`test.orphan-step-${maxAttempts}`, async (ctx) => ctx.step('slow', async () => ++runs), { lease: '500ms' });
    expect(await runWorkflow(t.db, key, resumed, null, { waitTimeout: '10s' })).toBe('late');
    expect(runs).toBe(1);
    expect(await keyRow(key)).toEqual([{ status: 'completed', steps: { slow: { value: 'late' } }, recovery_point: 'slow', released: null }]);
  }, 15_000);

  it('refuses a call timeout over 24.8 days (longer than a timer can wait: Node would fire it after 1 ms) before the call runs', async () => {
    let called = 0;
    const long = defineWorkflow('test.long-timeout', async (ctx) => ctx.call('charge', async () => ++called, { timeout: '30d', retries: 0 }));
    await expect(runWorkflow(t.db, 'long-timeout', long, null)).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(called).toBe(0);
    expect(await keyRow('long-timeout')).toEqual([{ status: 'started', steps: {}, recovery_point: null, released: true }]);
  });
});
