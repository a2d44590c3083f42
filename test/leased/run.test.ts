import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  defineWorkflow,
  IdempotencyInFlightError,
  IdempotencyKeyReusedError,
  runWorkflow,
  runWorkflowOutcome,
  withIdempotency,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { deferred } from '../support/fixtures.js';
import { auditPayment, chargeKey, createShopTables, keysByStatus, payWorkflow } from '../support/leased-shop.js';

const t = await testDatabase();
const gateway = t.newPool(4);
beforeAll(() => createShopTables(t.pool));


describe('runWorkflow', () => {
  it('runs every step once, completes the key, and replays the stored result', async () => {
    const pay = payWorkflow(gateway);
    const first = await runWorkflowOutcome(t.db, 'first', pay, { ref: 'first', amount: 500 });
    const again = await runWorkflowOutcome(t.db, 'first', pay, { ref: 'first', amount: 500 });

    expect(first.replayed).toBe(false);
    expect(first.value).toEqual({ status: 201, body: { paymentId: expect.any(Number), chargeId: expect.stringMatching(/^ch_/) } });
    expect(again).toEqual({ value: first.value, replayed: true });
    const audit = await auditPayment(t.pool, 'first', chargeKey('first'));
    expect(audit).toEqual({ payments: [{ status: 'paid', charge_id: audit.chargeId }], charges: 1, chargeId: first.value.body.chargeId, events: ['paid'] });
    const { rows } = await t.pool.query(`select status, owner_token, locked_until, attempts, recovery_point, workflow, input from idempotency_keys where key = 'first'`);
    expect(rows).toEqual([{ status: 'completed', owner_token: null, locked_until: null, attempts: 1, recovery_point: 'mark-paid', workflow: 'shop.pay', input: { ref: 'first', amount: 500 } }]);
  });

  it('gives run the input as stored (its JSON form), on the first run too', async () => {
    let seen: unknown;
    // The input type names what callers pass; run sees its JSON form (Jsonified): at is a string there.
    const echo = defineWorkflow<{ at: Date; gone?: undefined }, unknown>('test.echo', async (_ctx, input) => {
      const at: string = input.at;
      expect(typeof at).toBe('string');
      seen = input;
      return input;
    });
    const at = new Date('2026-01-02T03:04:05.000Z');
    const value = await runWorkflow(t.db, 'echo', echo, { at, gone: undefined });
    expect(seen).toEqual({ at: '2026-01-02T03:04:05.000Z' });
    expect(value).toEqual({ at: '2026-01-02T03:04:05.000Z' });
  });

  it('derives downstream keys from (scope, key, step): stable, and apart per scope', async () => {
    const keys = defineWorkflow('test.keys', async (ctx) => ({ a: ctx.downstreamKey('charge'), attempt: ctx.attempt }));
    const mine = await runWorkflow(t.db, 'dk', keys, null, { scope: 'alice' });
    const theirs = await runWorkflow(t.db, 'dk', keys, null, { scope: 'bob' });
    expect(mine).toEqual({ a: chargeKey('dk', 'alice'), attempt: 1 });
    expect(theirs.a).toBe(chargeKey('dk', 'bob'));
    expect(theirs.a).not.toBe(mine.a);
  });

  it('refuses the same key with another fingerprint (422), running nothing', async () => {
    const pay = payWorkflow(gateway);
    await runWorkflow(t.db, 'fp', pay, { ref: 'fp', amount: 500 }, { fingerprint: { amount: 500 } });
    const reused = runWorkflow(t.db, 'fp', pay, { ref: 'fp', amount: 900 }, { fingerprint: { amount: 900 } });
    await expect(reused).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    await expect(reused).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', status: 422 });
    const audit = await auditPayment(t.pool, 'fp', chargeKey('fp'));
    expect(audit.payments).toHaveLength(1);
    expect(audit.charges).toBe(1);
  });

  it("refuses a completed key of another workflow, or of an in-transaction call, instead of replaying someone else's answer", async () => {
    let ran = 0;
    const refund = defineWorkflow('test.refund', async () => {
      ran++;
      return { refunded: true };
    });
    const pay = payWorkflow(gateway);
    await runWorkflow(t.db, 'other-workflow', pay, { ref: 'other-workflow', amount: 500 });
    await withIdempotency(t.db, 'in-transaction', async () => ({ status: 201, body: 'in-transaction' }));

    await expect(runWorkflow(t.db, 'other-workflow', refund, null)).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', status: 422 });
    await expect(runWorkflow(t.db, 'in-transaction', refund, null)).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', status: 422 });
    expect(ran).toBe(0);
    const { rows } = await t.pool.query(`select key, status, workflow from idempotency_keys where key in ('other-workflow', 'in-transaction') order by key`);
    expect(rows).toEqual([
      { key: 'in-transaction', status: 'completed', workflow: null },
      { key: 'other-workflow', status: 'completed', workflow: 'shop.pay' },
    ]);
  });

  it('answers a duplicate in flight with 409 and a Retry-After under reject, and waits for the result under wait', async () => {
    const release = deferred();
    const entered = deferred();
    const slow = defineWorkflow(
      'test.slow',
      async (ctx) => {
        await ctx.step('effect', async (tx) => tx.execute(sql`insert into payments (ref, amount, status) values ('slow', 1, 'paid')`).then(() => 'ok'));
        entered.resolve();
        await release.promise;
        return 'finished';
      },
      { lease: '30s' },
    );
    const first = runWorkflow(t.db, 'slow', slow, null);
    await entered.promise;
    const rejected = await runWorkflow(t.db, 'slow', slow, null, { onInFlight: 'reject' }).catch((e: unknown) => e);
    expect(rejected).toBeInstanceOf(IdempotencyInFlightError);
    expect(rejected).toMatchObject({ code: 'IDEMPOTENCY_IN_FLIGHT', status: 409, retryable: true });
    expect((rejected as IdempotencyInFlightError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    const waiting = runWorkflowOutcome(t.db, 'slow', slow, null, { onInFlight: 'wait', waitTimeout: '10s' });
    release.resolve();
    expect(await first).toBe('finished');
    expect(await waiting).toEqual({ value: 'finished', replayed: true });
    const { rows } = await t.pool.query(`select count(*)::int as n from payments where ref = 'slow'`);
    expect(rows).toEqual([{ n: 1 }]);
  });

  it('runs once for many concurrent duplicates: one payment and one charge per key, no key left started', async () => {
    const pay = payWorkflow(gateway);
    const keys = Array.from({ length: 5 }, (_, i) => `storm-${i}`);
    const outcomes = await Promise.all(
      keys.flatMap((key) => Array.from({ length: 8 }, () => runWorkflowOutcome(t.db, key, pay, { ref: key, amount: 100 }, { waitTimeout: '20s' }))),
    );
    for (const key of keys) {
      const audit = await auditPayment(t.pool, key, chargeKey(key));
      expect(audit.payments).toEqual([{ status: 'paid', charge_id: audit.chargeId }]);
      expect(audit.charges).toBe(1);
      expect(audit.events).toEqual(['paid']);
    }
    expect(outcomes.filter((o) => !o.replayed)).toHaveLength(keys.length);
    const { rows } = await t.pool.query<{ calls: number }>(`select calls from gateway_ledger where downstream_key = any($1)`, [keys.map((k) => chargeKey(k))]);
    expect(rows.map((r) => r.calls)).toEqual(keys.map(() => 1));
    expect((await keysByStatus(t.pool)).started ?? 0).toBe(0);
  });

  it('keeps a long call alive with heartbeats: a duplicate never takes it over while the owner runs', async () => {
    let runs = 0;
    const long = defineWorkflow(
      'test.long',
      async (ctx) => {
        runs++;
        return ctx.call('wait', () => new Promise((resolve) => setTimeout(() => resolve('waited'), 1_500)));
      },
      { lease: '300ms', heartbeat: '100ms' },
    );
    const first = runWorkflow(t.db, 'long', long, null);
    const duplicates: unknown[] = [];
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      duplicates.push(await runWorkflow(t.db, 'long', long, null, { onInFlight: 'reject' }).catch((e: { code?: string }) => e.code));
    }
    expect(await first).toBe('waited');
    expect(duplicates).toEqual(Array(5).fill('IDEMPOTENCY_IN_FLIGHT'));
    expect(runs).toBe(1);
    const { rows } = await t.pool.query(`select attempts, status from idempotency_keys where key = 'long'`);
    expect(rows).toEqual([{ attempts: 1, status: 'completed' }]);
  });
});

describe('withIdempotency on a key held by leased work', () => {
  it('answers in flight and never takes it over, even after its lease ran out; replays it once completed', async () => {
    const release = deferred();
    const entered = deferred();
    const held = defineWorkflow(
      'test.held',
      async (ctx) => {
        await ctx.step('one', async () => 1);
        entered.resolve();
        await release.promise;
        return { done: true };
      },
      // A lease no heartbeat renews during the test (every 20 s): the test ends it by hand.
      { lease: '60s' },
    );
    const run = runWorkflow(t.db, 'held', held, null);
    await entered.promise;
    let ranFn = 0;
    const inTransaction = () =>
      withIdempotency(t.db, 'held', async () => {
        ranFn++;
        return 'in-transaction';
      }, { onInFlight: 'reject' });
    await expect(inTransaction()).rejects.toMatchObject({ code: 'IDEMPOTENCY_IN_FLIGHT' });
    // The lease runs out as if the holder had died.
    await t.pool.query(`update idempotency_keys set locked_until = now() - interval '1 second' where key = 'held'`);
    await expect(inTransaction()).rejects.toMatchObject({ code: 'IDEMPOTENCY_IN_FLIGHT' });
    const { rows } = await t.pool.query(`select status, steps from idempotency_keys where key = 'held'`);
    expect(rows).toEqual([{ status: 'started', steps: { one: { value: 1 } } }]);
    release.resolve();
    expect(await run).toEqual({ done: true });
    expect(await inTransaction()).toEqual({ done: true });
    expect(ranFn).toBe(0);
  });
});
