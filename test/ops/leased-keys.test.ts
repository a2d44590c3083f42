// inspectKey, idempotencyStats and evictKey on real leased keys: a lease held
// by a running workflow, a key in doubt (its gateway's answer lost, every run
// ending in an unknown outcome) and a failed key, as the runbook describes them.
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { completeAbandonedKeys, evictKey, idempotencyStats, IdempotencyInFlightError, inspectKey, runWorkflow } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { CUSTOMER_REF, holdLease, leaveInDoubt, recordFailed } from '../support/leased-keys.js';
import { auditPayment, chargeKey, createShopTables, keysByStatus, payWorkflow } from '../support/leased-shop.js';

const t = await testDatabase();
const gateway = t.newPool(2);
beforeAll(() => createShopTables(t.pool));
beforeEach(() => t.pool.query('truncate idempotency_keys, payments, payment_events, gateway_ledger'));

const ownerToken = async (key: string) =>
  (await t.pool.query<{ owner_token: string | null }>(`select owner_token::text from idempotency_keys where key = $1`, [key])).rows[0]?.owner_token;

/** Nothing an operator tool returns holds the input, a step's result (a charge id) or the owner token. */
async function expectNoSecrets(found: unknown, key: string) {
  const text = JSON.stringify(found);
  expect(text).not.toContain(CUSTOMER_REF);
  expect(text).not.toMatch(/ch_[0-9a-f]/);
  const token = await ownerToken(key);
  if (token) expect(text).not.toContain(token);
}

describe('a leased key whose lease a running workflow holds', () => {
  it('inspect shows its workflow, recovery point, recorded step names, attempts and a held lease, but no result, input or token', async () => {
    const run = await holdLease(t.db, gateway, 'pay-held', 'alice');

    const found = await inspectKey(t.db, 'pay-held', { scope: 'alice' });

    expect(found).toMatchObject({
      status: 'started',
      inFlight: true,
      locked: false,
      lease: 'held',
      workflow: 'shop.pay',
      recoveryPoint: 'charge',
      recordedSteps: ['charge', 'record-intent'],
      attempts: 1,
      hasOwnerToken: true,
    });
    expect(found!.lockedUntil!.getTime()).toBeGreaterThan(found!.now.getTime());
    await expectNoSecrets(found, 'pay-held');

    await run.release();
    expect(await auditPayment(t.pool, `${CUSTOMER_REF}:pay-held`, chargeKey('pay-held', 'alice'))).toMatchObject({ payments: [{ status: 'paid' }], charges: 1 });
  });

  it('stats counts it as leased and held, not waiting', async () => {
    const run = await holdLease(t.db, gateway, 'pay-held', 'alice');

    const stats = await idempotencyStats(t.db);

    expect(stats).toMatchObject({ inProgress: 1, leasedHeld: 1, leasedWaiting: 0, oldestWaiting: null, failed: 0 });
    await run.release();
    expect(await idempotencyStats(t.db)).toMatchObject({ inProgress: 0, leasedHeld: 0, leasedWaiting: 0, live: 1 });
  });

  it('evict refuses it even with force (IDEMPOTENCY_IN_FLIGHT, nothing removed): the run finishes, one charge, one payment', async () => {
    const run = await holdLease(t.db, gateway, 'pay-held', 'alice');

    for (const force of [false, true]) {
      const refused = await evictKey(t.db, 'pay-held', { scope: 'alice', force }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(IdempotencyInFlightError);
      expect((refused as Error).message).toMatch(force ? /lease held until .*even with force/ : /lease held/);
    }
    expect(await keysByStatus(t.pool)).toEqual({ started: 1 });

    const answer = await run.release();
    expect(answer).toMatchObject({ status: 201 });
    expect(await keysByStatus(t.pool)).toEqual({ completed: 1 });
    expect(await auditPayment(t.pool, `${CUSTOMER_REF}:pay-held`, chargeKey('pay-held', 'alice'))).toMatchObject({
      payments: [{ status: 'paid' }],
      charges: 1,
      events: ['paid'],
    });
  });
});

describe('a leased key in doubt: its gateway answer lost, the key started with its lease released', () => {
  it('inspect shows the lease ran out, the recovery point before the call, and the owner token only as present', async () => {
    await leaveInDoubt(t.db, gateway, 'pay-doubt', 'alice');

    const found = await inspectKey(t.db, 'pay-doubt', { scope: 'alice' });

    expect(found).toMatchObject({
      status: 'started',
      inFlight: true,
      lease: 'ran-out',
      workflow: 'shop.pay',
      recoveryPoint: 'record-intent',
      recordedSteps: ['record-intent'],
      attempts: 1,
      hasOwnerToken: true,
    });
    expect(found!.lockedUntil!.getTime()).toBeLessThanOrEqual(found!.now.getTime());
    await expectNoSecrets(found, 'pay-doubt');
  });

  it("stats counts it as waiting to be resumed (the completer's backlog) and names it as the oldest waiting, with its age", async () => {
    await leaveInDoubt(t.db, gateway, 'pay-old', 'alice');
    await t.pool.query(`update idempotency_keys set created_at = now() - interval '2 hours' where key = 'pay-old'`);
    await leaveInDoubt(t.db, gateway, 'pay-new', 'bob');
    const run = await holdLease(t.db, gateway, 'pay-held', 'carol');
    await recordFailed(t.db, 'pay-failed', 'dave');

    const stats = await idempotencyStats(t.db);

    expect(stats).toMatchObject({ inProgress: 3, leasedHeld: 1, leasedWaiting: 2, failed: 1, live: 4, expired: 0 });
    expect(stats.oldestWaiting).toMatchObject({ scope: 'alice', key: 'pay-old', workflow: 'shop.pay', recoveryPoint: 'record-intent', attempts: 1 });
    expect(stats.now.getTime() - stats.oldestWaiting!.createdAt.getTime()).toBeGreaterThanOrEqual(2 * 3_600_000);
    expect(stats.oldestWaiting!.leaseEndedAt!.getTime()).toBeLessThanOrEqual(stats.now.getTime());
    await expectNoSecrets(stats, 'pay-old');

    // The completer works the backlog off; stats follow it.
    const pass = await completeAbandonedKeys(t.db, [payWorkflow(gateway, { reconcile: true })]);
    expect(pass).toMatchObject({ completed: 2 });
    expect(await idempotencyStats(t.db)).toMatchObject({ inProgress: 1, leasedHeld: 1, leasedWaiting: 0, oldestWaiting: null, failed: 1 });
    await run.release();
    expect(await keysByStatus(t.pool)).toEqual({ completed: 3, failed: 1 });
    for (const [key, scope] of [['pay-old', 'alice'], ['pay-new', 'bob'], ['pay-held', 'carol']] as const) {
      expect(await auditPayment(t.pool, `${CUSTOMER_REF}:${key}`, chargeKey(key, scope))).toMatchObject({ payments: [{ status: 'paid' }], charges: 1, events: ['paid'] });
    }
  });

  it('evict refuses it without force, naming its workflow and recovery point and pointing at the completer', async () => {
    await leaveInDoubt(t.db, gateway, 'pay-doubt', 'alice');

    const refused = await evictKey(t.db, 'pay-doubt', { scope: 'alice' }).catch((e: unknown) => e);

    expect(refused).toBeInstanceOf(IdempotencyInFlightError);
    expect((refused as Error).message).toMatch(/workflow "shop.pay", recovery point "record-intent", attempt 1, lease ran out.*complete.*a new run repeats them/);
    expect(await keysByStatus(t.pool)).toEqual({ started: 1 });
  });

  it('evict with force removes it and says which recorded steps went with it; a new run starts over with the same downstream key: still one charge', async () => {
    await leaveInDoubt(t.db, gateway, 'pay-doubt', 'alice');

    const removed = await evictKey(t.db, 'pay-doubt', { scope: 'alice', force: true });

    expect(removed).toMatchObject({ status: 'started', workflow: 'shop.pay', recoveryPoint: 'record-intent', recordedSteps: ['record-intent'], attempts: 1, hasOwnerToken: true });
    expect(removed).not.toHaveProperty('leaseHeld');
    await expectNoSecrets(removed, 'pay-doubt');
    expect(await keysByStatus(t.pool)).toEqual({});

    // What the runbook warns of: the local step runs again (a second pending payment); the gateway deduplicates the charge by its key.
    await runWorkflow(t.db, 'pay-doubt', payWorkflow(gateway), { ref: `${CUSTOMER_REF}:pay-doubt`, amount: 4200 }, { scope: 'alice' });
    const audit = await auditPayment(t.pool, `${CUSTOMER_REF}:pay-doubt`, chargeKey('pay-doubt', 'alice'));
    expect(audit.charges).toBe(1);
    expect(audit.payments.map((p) => p.status).sort()).toEqual(['paid', 'pending']);
    expect(await keysByStatus(t.pool)).toEqual({ completed: 1 });
  });
});

describe('a failed leased key', () => {
  it('inspect shows its workflow, last step and attempts, without a lease or an owner', async () => {
    await recordFailed(t.db, 'pay-failed', 'alice');

    const found = await inspectKey(t.db, 'pay-failed', { scope: 'alice' });

    expect(found).toMatchObject({
      status: 'failed',
      inFlight: false,
      lease: 'none',
      lockedUntil: null,
      workflow: 'ops.pay-declined',
      recoveryPoint: 'record-intent',
      recordedSteps: ['record-intent'],
      attempts: 1,
      hasOwnerToken: false,
    });
    await expectNoSecrets(found, 'pay-failed');
    expect(await idempotencyStats(t.db)).toMatchObject({ failed: 1, inProgress: 0, leasedWaiting: 0 });
  });
});

describe('a key of an in-transaction call', () => {
  it('inspect shows no leased facts: no workflow, no steps, 0 attempts, no lease', async () => {
    await t.pool.query(`insert into idempotency_keys (key, status, expires_at) values ('plain', 'started', now() + interval '1 hour')`);

    expect(await inspectKey(t.db, 'plain')).toMatchObject({ lease: 'none', workflow: null, recoveryPoint: null, recordedSteps: [], attempts: 0, hasOwnerToken: false });
    // Stats: in progress, but neither leased count.
    expect(await idempotencyStats(t.db)).toMatchObject({ inProgress: 1, leasedHeld: 0, leasedWaiting: 0 });
  });
});
