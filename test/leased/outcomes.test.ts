import { beforeAll, describe, expect, it } from 'vitest';
import {
  completeAbandonedKeys,
  defineWorkflow,
  IdempotencyOutcomeUnknownError,
  IdempotencyWorkflowFailedError,
  runWorkflow,
  runWorkflowOutcome,
  withIdempotency,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { auditPayment, chargeKey, createShopTables, payWorkflow, type GatewayFault } from '../support/leased-shop.js';

const t = await testDatabase();
const gateway = t.newPool(2);
beforeAll(() => createShopTables(t.pool));

const calls = async (key: string) =>
  (await t.pool.query<{ calls: number }>(`select calls from gateway_ledger where downstream_key = $1`, [chargeKey(key)])).rows[0]?.calls ?? 0;
const row = async (key: string) =>
  (
    await t.pool.query<{ status: string; attempts: number; released: boolean; recovery_point: string | null }>(
      `select status, attempts, locked_until <= now() as released, recovery_point from idempotency_keys where key = $1`,
      [key],
    )
  ).rows[0];

describe('an external call whose outcome is unknown', () => {
  it('is tried again with the same downstream key after a lost answer: the gateway charges once', async () => {
    const faults: GatewayFault[] = ['drop-answer', 'drop-answer'];
    const pay = payWorkflow(gateway, { fault: (attempt) => faults[attempt - 1] ?? 'none', retries: 2 });
    const outcome = await runWorkflowOutcome(t.db, 'dropped', pay, { ref: 'dropped', amount: 700 });

    expect(await calls('dropped')).toBe(3);
    const audit = await auditPayment(t.pool, 'dropped', chargeKey('dropped'));
    expect(audit).toMatchObject({ payments: [{ status: 'paid' }], charges: 1, chargeId: outcome.value.body.chargeId, events: ['paid'] });
  });

  it('is tried again after a timeout, with the same downstream key', async () => {
    const pay = payWorkflow(gateway, { fault: (attempt) => (attempt === 1 ? 'slow' : 'none'), slowMs: 2_000, timeout: 200, retries: 1 });
    const outcome = await runWorkflowOutcome(t.db, 'slow', pay, { ref: 'slow', amount: 700 });
    expect(await calls('slow')).toBe(2);
    expect(await auditPayment(t.pool, 'slow', chargeKey('slow'))).toMatchObject({ charges: 1, chargeId: outcome.value.body.chargeId, events: ['paid'] });
  });

  it('is tried again with the same downstream key when the error says outcomeUnknown (a gateway 5xx): the gateway charges once', async () => {
    const pay = payWorkflow(gateway, { fault: (attempt) => (attempt === 1 ? 'charge-then-500' : 'none'), retries: 1 });
    const outcome = await runWorkflowOutcome(t.db, 'answered-500', pay, { ref: 'answered-500', amount: 700 });
    expect(await calls('answered-500')).toBe(2);
    expect(await auditPayment(t.pool, 'answered-500', chargeKey('answered-500'))).toMatchObject({ charges: 1, chargeId: outcome.value.body.chargeId, events: ['paid'] });
  });

  it('with reconcile, asks the gateway before a retry and records what it found: no second request', async () => {
    const pay = payWorkflow(gateway, { fault: (attempt) => (attempt === 1 ? 'drop-answer' : 'none'), reconcile: true });
    const outcome = await runWorkflowOutcome(t.db, 'reconciled', pay, { ref: 'reconciled', amount: 700 });
    expect(await calls('reconciled')).toBe(1);
    expect(await auditPayment(t.pool, 'reconciled', chargeKey('reconciled'))).toMatchObject({ charges: 1, chargeId: outcome.value.body.chargeId });
  });

  it('with reconcile answering "did not happen", calls again', async () => {
    const pay = payWorkflow(gateway, { fault: (attempt) => (attempt === 1 ? 'refuse' : 'none'), reconcile: true });
    await runWorkflow(t.db, 'refused', pay, { ref: 'refused', amount: 700 });
    expect(await calls('refused')).toBe(1);
  });

  it('out of retries, fails with IDEMPOTENCY_OUTCOME_UNKNOWN (503, retryable), keeps the key started with its lease released, and a retry resumes it', async () => {
    const lossy = payWorkflow(gateway, { fault: () => 'drop-answer', retries: 1 });
    const failed = await runWorkflow(t.db, 'unknown', lossy, { ref: 'unknown', amount: 700 }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(IdempotencyOutcomeUnknownError);
    expect(failed).toMatchObject({ code: 'IDEMPOTENCY_OUTCOME_UNKNOWN', status: 503, retryable: true });
    expect(await calls('unknown')).toBe(2);
    expect(await row('unknown')).toEqual({ status: 'started', attempts: 1, released: true, recovery_point: 'record-intent' });

    // The retry resumes at once (the lease was released) and asks the gateway first: it had charged.
    const pay = payWorkflow(gateway, { reconcile: true });
    const outcome = await runWorkflowOutcome(t.db, 'unknown', pay, { ref: 'unknown', amount: 700 }, { onInFlight: 'reject' });
    expect(await calls('unknown')).toBe(2);
    expect(await auditPayment(t.pool, 'unknown', chargeKey('unknown'))).toMatchObject({ payments: [{ status: 'paid' }], charges: 1, chargeId: outcome.value.body.chargeId, events: ['paid'] });
    expect(await row('unknown')).toMatchObject({ status: 'completed', attempts: 2 });
  });

  it('lost on every try past maxAttempts never records the key as failed (the gateway may have charged): it stays started, and once the gateway recovers the completer completes it with one charge', async () => {
    const key = 'gateway-down';
    const options = { lease: '500ms', maxAttempts: 2 } as const;
    const down = payWorkflow(gateway, { fault: () => 'drop-answer', retries: 1 }, options);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const error = await runWorkflow(t.db, key, down, { ref: key, amount: 900 }, { onInFlight: 'reject' }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'IDEMPOTENCY_OUTCOME_UNKNOWN', retryable: true });
      expect(await row(key)).toEqual({ status: 'started', attempts: attempt, released: true, recovery_point: 'record-intent' });
    }
    // Two tries per run, each with the same downstream key: the gateway charged once.
    expect(await calls(key)).toBe(6);

    const up = payWorkflow(gateway, { reconcile: true }, options);
    expect(await completeAbandonedKeys(t.db, [up])).toEqual({ completed: 1, failed: 0, retried: 0, skipped: 0 });
    // The resumed run asked the gateway first, found the charge, and recorded it: no new request.
    expect(await calls(key)).toBe(6);
    const audit = await auditPayment(t.pool, key, chargeKey(key));
    expect(audit).toEqual({ payments: [{ status: 'paid', charge_id: audit.chargeId }], charges: 1, chargeId: audit.chargeId, events: ['paid'] });
    expect(await row(key)).toMatchObject({ status: 'completed', attempts: 4 });
    expect(await runWorkflow(t.db, key, up, { ref: key, amount: 900 })).toMatchObject({ body: { chargeId: audit.chargeId } });
  });

  it('a definite failure (not a timeout or network error) is not retried within the run', async () => {
    let tries = 0;
    const declined = defineWorkflow('test.declined', async (ctx) =>
      ctx.call('charge', async () => {
        tries++;
        throw Object.assign(new Error('card declined'), { status: 402 });
      }),
    );
    await expect(runWorkflow(t.db, 'declined', declined, null)).rejects.toThrow('card declined');
    expect(tries).toBe(1);
  });
});

describe('a workflow that keeps failing', () => {
  it('releases its lease on each failure, is recorded as failed after maxAttempts, and replays IDEMPOTENCY_WORKFLOW_FAILED without running', async () => {
    let runs = 0;
    const broken = defineWorkflow(
      'test.broken',
      async (ctx) => {
        runs++;
        await ctx.step('first', async () => 'done once');
        throw new Error('boom');
      },
      { maxAttempts: 3, lease: '500ms' },
    );
    for (let i = 1; i <= 2; i++) {
      await expect(runWorkflow(t.db, 'broken', broken, { secret: 'card 4242' })).rejects.toThrow('boom');
      expect(await row('broken')).toMatchObject({ status: 'started', attempts: i, released: true });
    }
    const last = await runWorkflow(t.db, 'broken', broken, { secret: 'card 4242' }).catch((e: unknown) => e);
    expect(last).toBeInstanceOf(IdempotencyWorkflowFailedError);
    expect(last).toMatchObject({ code: 'IDEMPOTENCY_WORKFLOW_FAILED', status: 500, retryable: false });
    expect((last as Error).message).toContain('"test.broken"');
    expect((last as Error).message).toContain('"first"');
    expect((last as Error).message).toContain('3 attempts');
    expect((last as Error).message).not.toContain('4242');
    expect(runs).toBe(3);

    const replay = await runWorkflow(t.db, 'broken', broken, { secret: 'card 4242' }).catch((e: unknown) => e);
    expect(replay).toMatchObject({ code: 'IDEMPOTENCY_WORKFLOW_FAILED' });
    expect((replay as Error).message).not.toContain('4242');
    expect(runs).toBe(3);
    const inTransaction = await withIdempotency(t.db, 'broken', async () => 'ran').catch((e: unknown) => e);
    expect(inTransaction).toMatchObject({ code: 'IDEMPOTENCY_WORKFLOW_FAILED' });
    const { rows } = await t.pool.query(
      `select status, owner_token, locked_until, attempts, expires_at > now() + interval '23 hours' as lives from idempotency_keys where key = 'broken'`,
    );
    expect(rows).toEqual([{ status: 'failed', owner_token: null, locked_until: null, attempts: 3, lives: true }]);
  });
});
