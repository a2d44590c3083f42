import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it } from 'vitest';
import { completeAbandonedKeys, defineWorkflow, runWorkflowOutcome, type IdempotencyDatabase } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { DRIVERS, type OpenDriver } from '../support/drivers.js';

const t = await testDatabase();

const rowsOf = async (db: IdempotencyDatabase, query: ReturnType<typeof sql>) => {
  const result = (await db.execute(query)) as { rows?: unknown[] } | unknown[];
  return Array.isArray(result) ? result : (result.rows ?? []);
};

/** A payment-like workflow on any driver: a local step, an external call, a local step; the first run fails after the call. */
const flaky = defineWorkflow(
  'test.drivers',
  async (ctx, input: { ref: string }) => {
    const intent = await ctx.step('intent', async (tx) => {
      await tx.execute(sql`insert into driver_effects (ref, step) values (${input.ref}, 'intent')`);
      return { at: new Date('2026-01-01T00:00:00Z') };
    });
    const charge = await ctx.call('charge', async ({ downstreamKey }) => ({ id: downstreamKey.slice(0, 10) }));
    if (ctx.attempt === 1) throw new Error('crash after the charge');
    await ctx.step('paid', async (tx) => {
      await tx.execute(sql`insert into driver_effects (ref, step) values (${input.ref}, 'paid')`);
    });
    return { intent, charge };
  },
  { lease: '300ms' },
);

describe.each(DRIVERS)('leased work on $name', (driver) => {
  let open: OpenDriver | undefined;
  afterAll(() => open?.close());

  it.skipIf(driver.unavailable !== undefined)('runs, resumes from its recovery point through the completer, and replays: each step once', async () => {
    open = await driver.open(t.url, t.name);
    const db = open.db;
    await db.execute(sql`create table if not exists driver_effects (ref text not null, step text not null)`);
    const ref = `ref-${driver.name}`;
    await expect(runWorkflowOutcome(db, ref, flaky, { ref })).rejects.toThrow('crash after the charge');
    expect(await completeAbandonedKeys(db, [flaky])).toMatchObject({ completed: 1 });
    const replay = await runWorkflowOutcome(db, ref, flaky, { ref });

    expect(replay).toEqual({ value: { intent: { at: '2026-01-01T00:00:00.000Z' }, charge: { id: expect.stringMatching(/^di-/) } }, replayed: true });
    const effects = await rowsOf(db, sql`select step from driver_effects where ref = ${ref} order by step`);
    expect(effects).toEqual([{ step: 'intent' }, { step: 'paid' }]);
    const keys = await rowsOf(db, sql`select status, attempts from idempotency_keys where key = ${ref}`);
    expect(keys).toEqual([{ status: 'completed', attempts: 2 }]);
  });
});
