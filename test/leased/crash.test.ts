import { beforeAll, describe, it, type TestContext } from 'vitest';
import { completeAbandonedKeys, runWorkflow, runWorkflowOutcome } from '../../src/index.js';
import { bundled } from '../support/bundle.js';
import { testDatabase, testDatabaseForTest, type TestDatabase } from '../support/db.js';
import { launch } from '../support/processes.js';
import { settled } from '../support/processes.js';
import { auditPayment, chargeKey, createShopTables, keysByStatus, payWorkflow, type ShopPoint } from '../support/leased-shop.js';

type ShopDatabase = TestDatabase & { gateway: TestDatabase['pool'] };

// The tests run concurrently. Those that run a completer or count every key
// have a database of their own (a completer takes every abandoned key of its
// database); the others touch only their own key, and share one.
const file = await testDatabase({ max: 10 });
const shared: ShopDatabase = { ...file, gateway: file.newPool(4) };
beforeAll(() => createShopTables(shared.pool));

/** A database of the test's own, with the shop's tables, and a pool for the gateway's calls. */
async function shopDatabase(test: TestContext): Promise<ShopDatabase> {
  const t = await testDatabaseForTest(test, { max: 4 });
  await createShopTables(t.pool);
  return { ...t, gateway: t.newPool(2) };
}

const LEASE = '500ms';

/** Runs the payment for `key` in a child process that stops or dies at `point`, once it got there. */
async function childAt(t: TestDatabase, key: string, point: ShopPoint, how: 'kill' | 'stop') {
  const child = launch(process.execPath, [await bundled('test/support/leased-child.ts'), t.url, key, point, how, LEASE], { env: process.env });
  await child.waitFor(new RegExp(`at ${point}\\n`));
  return child;
}

/** The key row's lease state, by the database clock. */
async function leaseOf(t: TestDatabase, key: string) {
  const { rows } = await t.pool.query<{ live: boolean; attempts: number; recovery_point: string | null; status: string }>(
    `select locked_until > now() as live, attempts, recovery_point, status from idempotency_keys where key = $1`,
    [key],
  );
  return rows[0]!;
}

// Where the process dies, and the last step the row says was committed then.
const points: [ShopPoint, string | null][] = [
  ['after-claim', null],
  ['after-intent', 'record-intent'],
  // The gateway charged, and the process died before the answer was recorded.
  ['charged', 'record-intent'],
  ['after-charge', 'charge'],
  ['before-complete', 'mark-paid'],
];

// The slowest tests come first: at most five run at once (vitest's maxConcurrency), started in file order.
describe.concurrent('a zombie owner (paused past its lease, then resumed)', () => {
  it('paused inside a local step is still the owner: its open step holds the row, so nobody takes over; resumed, it finishes', async (context) => {
    const { expect } = context;
    const t = await shopDatabase(context);
    const key = 'paused-in-step';
    const owner = await childAt(t, key, 'in-intent', 'stop');
    try {
      await settled(() => leaseOf(t, key), (l) => !l.live, 5_000);
      const pay = payWorkflow(t.gateway, {}, { lease: LEASE });
      // Neither a retry nor the completer waits on the step's row lock for long, nor takes the key.
      await expect(runWorkflow(t.db, key, pay, { ref: key, amount: 500 }, { onInFlight: 'reject' })).rejects.toMatchObject({ code: 'IDEMPOTENCY_IN_FLIGHT' });
      expect(await completeAbandonedKeys(t.db, [pay])).toEqual({ completed: 0, failed: 0, retried: 0, skipped: 1 });
      expect(await leaseOf(t, key)).toMatchObject({ status: 'started', attempts: 1, recovery_point: null });

      owner.child.kill('SIGCONT');
      await owner.finished;
      expect(owner.output()).toMatch(/done .*"status":201/);
      const audit = await auditPayment(t.pool, key, chargeKey(key));
      expect(audit).toMatchObject({ payments: [{ status: 'paid' }], charges: 1, events: ['paid'] });
      expect(await leaseOf(t, key)).toMatchObject({ status: 'completed', attempts: 1 });
    } finally {
      owner.child.kill('SIGKILL');
    }
  });

  it.for([
    ['inside its external call', 'charged'],
    ['before a local step', 'after-charge'],
    ['before completing', 'before-complete'],
  ] as const)('%s: its late writes are refused with IDEMPOTENCY_LEASE_LOST once another process took over and completed', async ([_where, point], context) => {
    const { expect } = context;
    const t = shared;
    const key = `zombie-${point}`;
    const zombie = await childAt(t, key, point, 'stop');
    try {
      await settled(() => leaseOf(t, key), (l) => !l.live, 5_000);
      const pay = payWorkflow(t.gateway, {}, { lease: LEASE });
      const outcome = await runWorkflowOutcome(t.db, key, pay, { ref: key, amount: 500 }, { waitTimeout: '10s' });
      expect(outcome.replayed).toBe(false);
      // The zombie's completion would rewrite completed_at and expires_at.
      const before = await t.pool.query(`select status, response, attempts, completed_at, expires_at from idempotency_keys where key = $1`, [key]);

      zombie.child.kill('SIGCONT');
      await zombie.finished;
      expect(zombie.output()).toContain('error IDEMPOTENCY_LEASE_LOST');
      const after = await t.pool.query(`select status, response, attempts, completed_at, expires_at from idempotency_keys where key = $1`, [key]);
      expect(after.rows).toEqual(before.rows);
      const audit = await auditPayment(t.pool, key, chargeKey(key));
      expect(audit).toEqual({ payments: [{ status: 'paid', charge_id: audit.chargeId }], charges: 1, chargeId: outcome.value.body.chargeId, events: ['paid'] });
    } finally {
      zombie.child.kill('SIGKILL');
    }
  });
});

describe.concurrent('a key abandoned by a crash after it used its attempts', () => {
  it.for(['a retry', 'the completer'] as const)('is taken over and resumed by %s, never recorded as failed blind (the crash may hide a charge): one payment, one charge', async (by, context) => {
    const { expect } = context;
    const t = await shopDatabase(context);
    const key = `out-of-attempts-${by === 'a retry' ? 'retry' : 'completer'}`;
    const child = await childAt(t, key, 'charged', 'kill');
    await child.exited;
    await settled(() => leaseOf(t, key), (l) => !l.live, 5_000);
    const pay = payWorkflow(t.gateway, { reconcile: true }, { lease: LEASE, maxAttempts: 1 });

    if (by === 'a retry') {
      const outcome = await runWorkflowOutcome(t.db, key, pay, { ref: key, amount: 500 }, { onInFlight: 'reject' });
      expect(outcome.replayed).toBe(false);
    } else {
      expect(await completeAbandonedKeys(t.db, [pay])).toEqual({ completed: 1, failed: 0, retried: 0, skipped: 0 });
    }
    const audit = await auditPayment(t.pool, key, chargeKey(key));
    expect(audit).toEqual({ payments: [{ status: 'paid', charge_id: audit.chargeId }], charges: 1, chargeId: audit.chargeId, events: ['paid'] });
    expect(await leaseOf(t, key)).toMatchObject({ status: 'completed', attempts: 2, recovery_point: 'mark-paid' });
  });
});

describe.concurrent('a process killed while it holds leased work', () => {
  it('at every point at once, the completer finishes every key without a client: one payment and one charge each, none left started', async (context) => {
    const { expect } = context;
    const t = await shopDatabase(context);
    const keys = await Promise.all(
      points.map(async ([point]) => {
        const key = `completer-${point}`;
        const child = await childAt(t, key, point, 'kill');
        await child.exited;
        return key;
      }),
    );
    await settled(() => Promise.all(keys.map((key) => leaseOf(t, key))), (leases) => leases.every((l) => !l.live), 5_000);
    const result = await completeAbandonedKeys(t.db, [payWorkflow(t.gateway, {}, { lease: LEASE })]);

    expect(result).toEqual({ completed: keys.length, failed: 0, retried: 0, skipped: 0 });
    for (const key of keys) {
      const audit = await auditPayment(t.pool, key, chargeKey(key));
      expect(audit.payments).toEqual([{ status: 'paid', charge_id: audit.chargeId }]);
      expect(audit.charges).toBe(1);
      expect(audit.events).toEqual(['paid']);
    }
    expect((await keysByStatus(t.pool)).started ?? 0).toBe(0);
  });

  it.for(points)('at %s: the row keeps its recovery point, and a retry resumes from it: one payment, one charge', async ([point, recoveryPoint], context) => {
    const { expect } = context;
    const t = shared;
    const key = `crash-${point}`;
    const child = await childAt(t, key, point, 'kill');
    expect((await child.exited).signal).toBe('SIGKILL');
    expect(await leaseOf(t, key)).toMatchObject({ status: 'started', attempts: 1, recovery_point: recoveryPoint });

    // The retry waits for the dead owner's lease to run out, then takes over.
    const pay = payWorkflow(t.gateway, { at: async (_point, attempt) => void expect(attempt).toBe(2) }, { lease: LEASE });
    const outcome = await runWorkflowOutcome(t.db, key, pay, { ref: key, amount: 500 }, { waitTimeout: '10s' });

    expect(outcome.replayed).toBe(false);
    const audit = await auditPayment(t.pool, key, chargeKey(key));
    expect(audit).toEqual({ payments: [{ status: 'paid', charge_id: audit.chargeId }], charges: 1, chargeId: outcome.value.body.chargeId, events: ['paid'] });
    expect(await leaseOf(t, key)).toMatchObject({ status: 'completed', attempts: 2, recovery_point: 'mark-paid' });
  });
});

