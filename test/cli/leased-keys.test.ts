// `drizzle-idempotency stats`, `inspect` and `evict` on real leased keys, as an
// operator meets them in the runbook: a lease held by a running workflow (in
// this process), a key in doubt (its gateway's answer lost, lease released)
// and a failed key. The CLI runs as a child process against the same database.
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startCli } from '../support/cli.js';
import { testDatabase } from '../support/db.js';
import { CUSTOMER_REF, holdLease, leaveInDoubt, recordFailed } from '../support/leased-keys.js';
import { auditPayment, chargeKey, createShopTables, keysByStatus } from '../support/leased-shop.js';

const t = await testDatabase();
const gateway = t.newPool(2);
const cli = (args: string[]) => startCli(args, { DATABASE_URL: t.url }).done;

beforeAll(() => createShopTables(t.pool));
beforeEach(() => t.pool.query('truncate idempotency_keys, payments, payment_events, gateway_ledger'));

const ownerTokens = async () => (await t.pool.query<{ token: string }>(`select owner_token::text as token from idempotency_keys where owner_token is not null`)).rows.map((r) => r.token);

/** Printed output holds neither the input, nor a step's result (a charge id), nor an owner token. */
async function expectNoSecrets(output: string) {
  expect(output).not.toContain(CUSTOMER_REF);
  expect(output).not.toMatch(/ch_[0-9a-f]/);
  for (const token of await ownerTokens()) expect(output).not.toContain(token);
}

describe('drizzle-idempotency inspect on leased work', () => {
  it('prints a key in doubt: its workflow, recovery point, step names, attempts, a lease run out and an owner, never the results', async () => {
    await leaveInDoubt(t.db, gateway, 'pay-doubt', 'alice');

    const run = await cli(['inspect', 'pay-doubt', '--scope', 'alice']);

    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^ {2}status +started$/m);
    expect(run.stdout).toMatch(/^ {2}lease +\S+ \(.* ago\), ran out or released$/m);
    expect(run.stdout).toMatch(/^ {2}workflow +shop\.pay$/m);
    expect(run.stdout).toMatch(/^ {2}recovery +after step record-intent$/m);
    expect(run.stdout).toMatch(/^ {2}steps +record-intent$/m);
    expect(run.stdout).toMatch(/^ {2}attempts +1$/m);
    expect(run.stdout).toMatch(/^ {2}owner +a run owns it \(owner token set; not shown\)$/m);
    expect(run.stdout).toMatch(/^ {2}next call +resumes the leased work/m);
    await expectNoSecrets(run.stdout);

    const json = await cli(['inspect', 'pay-doubt', '--scope', 'alice', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      status: 'started',
      inFlight: true,
      lease: 'ran-out',
      workflow: 'shop.pay',
      recoveryPoint: 'record-intent',
      recordedSteps: ['record-intent'],
      attempts: 1,
      hasOwnerToken: true,
    });
    await expectNoSecrets(json.stdout);
    expect(await keysByStatus(t.pool)).toEqual({ started: 1 });
  });

  it('prints a held lease as held, and the next call as in flight', async () => {
    const held = await holdLease(t.db, gateway, 'pay-held', 'alice');

    const run = await cli(['inspect', 'pay-held', '--scope', 'alice']);

    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ {2}lease +\S+ \(in .*\), held$/m);
    expect(run.stdout).toMatch(/^ {2}steps +charge, record-intent$/m);
    expect(run.stdout).toMatch(/^ {2}recovery +after step charge$/m);
    expect(run.stdout).toMatch(/^ {2}next call +gets 409 IDEMPOTENCY_IN_FLIGHT until the lease runs out$/m);
    await expectNoSecrets(run.stdout);
    await held.release();
    expect(await keysByStatus(t.pool)).toEqual({ completed: 1 });
  });

  it('prints a failed key with its workflow, last step and attempts', async () => {
    await recordFailed(t.db, 'pay-failed', 'alice');

    const run = await cli(['inspect', 'pay-failed', '--scope', 'alice']);

    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ {2}status +failed$/m);
    expect(run.stdout).toMatch(/^ {2}workflow +ops\.pay-declined$/m);
    expect(run.stdout).toMatch(/^ {2}recovery +after step record-intent$/m);
    expect(run.stdout).toMatch(/^ {2}attempts +1$/m);
    expect(run.stdout).toMatch(/^ {2}owner +none$/m);
    expect(run.stdout).toMatch(/^ {2}next call +gets 500 IDEMPOTENCY_WORKFLOW_FAILED/m);
    await expectNoSecrets(run.stdout);
  });
});

describe('drizzle-idempotency stats on leased work', () => {
  it('splits in progress into held leases and the backlog waiting to be resumed, names the oldest waiting key, and counts failed keys', async () => {
    await leaveInDoubt(t.db, gateway, 'pay-doubt', 'alice');
    await t.pool.query(`update idempotency_keys set created_at = now() - interval '3 hours' where key = 'pay-doubt'`);
    const held = await holdLease(t.db, gateway, 'pay-held', 'bob');
    await recordFailed(t.db, 'pay-failed', 'carol');

    const run = await cli(['stats']);
    const json = await cli(['stats', '--json']);

    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ {2}in progress +2$/m);
    expect(run.stdout).toMatch(/^ {4}leased, held +1 {2}\(a process is running them\)$/m);
    expect(run.stdout).toMatch(/^ {4}leased, waiting +1 {2}\(lease ran out or released: .*complete` resumes them\)$/m);
    expect(run.stdout).toMatch(/^ {4}oldest waiting +key "pay-doubt" in scope "alice", workflow "shop\.pay", created 3 h \d+ min ago, recovery point "record-intent", attempt 1, lease ended .* ago$/m);
    expect(run.stdout).toMatch(/^ {2}failed keys +1 {2}\(every call gets 500 IDEMPOTENCY_WORKFLOW_FAILED/m);
    await expectNoSecrets(run.stdout);
    // Additive: the fields scripts read already keep their meaning.
    expect(JSON.parse(json.stdout)).toMatchObject({
      live: 3,
      expired: 0,
      inProgress: 2,
      leasedHeld: 1,
      leasedWaiting: 1,
      failed: 1,
      oldestWaiting: { scope: 'alice', key: 'pay-doubt', workflow: 'shop.pay', recoveryPoint: 'record-intent', attempts: 1 },
    });

    await held.release();
    expect(await keysByStatus(t.pool)).toEqual({ completed: 1, failed: 1, started: 1 });
  });
});

describe('drizzle-idempotency evict on leased work', () => {
  it('refuses a held lease with exit 6 even with --force: nothing removed, the run finishes with one charge', async () => {
    const held = await holdLease(t.db, gateway, 'pay-held', 'alice');

    const run = await cli(['evict', 'pay-held', '--scope', 'alice', '--force']);

    expect(run.code).toBe(6);
    expect(run.stdout).toBe('');
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/leased work in flight \(workflow "shop\.pay", lease held until .*\); nothing was removed, even with force/);
    await held.release();
    expect(await keysByStatus(t.pool)).toEqual({ completed: 1 });
    expect(await auditPayment(t.pool, `${CUSTOMER_REF}:pay-held`, chargeKey('pay-held', 'alice'))).toMatchObject({ payments: [{ status: 'paid' }], charges: 1 });
  });

  it('refuses a key in doubt without --force, pointing at the completer; with --force removes it and says the steps will be repeated', async () => {
    await leaveInDoubt(t.db, gateway, 'pay-doubt', 'alice');

    const refused = await cli(['evict', 'pay-doubt', '--scope', 'alice']);
    expect(refused.code).toBe(6);
    expect(refused.stderr).toMatch(/workflow "shop\.pay", recovery point "record-intent", attempt 1, lease ran out: .*drizzle-idempotency complete/);
    expect(await keysByStatus(t.pool)).toEqual({ started: 1 });

    const forced = await cli(['evict', 'pay-doubt', '--scope', 'alice', '--force']);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/workflow shop\.pay, attempt 1, steps record-intent\); the next call with it runs the workflow from the start: it repeats the recorded steps/);
    await expectNoSecrets(forced.stdout);
    expect(await keysByStatus(t.pool)).toEqual({});
  });
});
