import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it, type TestContext } from 'vitest';
import { gatewayClient } from '../../examples/gateway/client.js';
import { spawnGateway } from '../../examples/gateway/process.js';
import { CRASH_POINTS, type CrashPoint } from '../../examples/shop/crash-points.js';
import { fetchWithRetry } from '../../src/client.js';
import { bundled } from '../support/bundle.js';
import { testDatabase, testDatabaseForTest, type TestDatabase } from '../support/db.js';
import { sleep } from '../support/fixtures.js';
import { launch, settled } from '../support/processes.js';
import { startShopProcess, type ShopProcess } from '../support/shop-process.js';

// The shop's payments go through the gateway as leased work. Here the shop is
// killed with SIGKILL at each point a payment passes (SHOP_CRASH_AT, honoured
// by examples/shop/crash-points.ts), started again, and the clients' retries
// plus the completer must finish every payment: one charge per key in the
// gateway's ledger, one paid payment per key, no key left started.
//
// The tests run concurrently, each with a database of its own for its shops (a
// shop's completer takes every abandoned key of its database), and one gateway,
// on a database of its own, for all but the test that slows it down. The shops
// start from a bundle of the sources: under tsx, each start cost a second of CPU.
const gatewayDb = await testDatabase({ max: 1 });
const sinkDir = await mkdtemp(join(tmpdir(), 'gateway-crash-'));
const sharedGateway = await spawnGateway(gatewayDb.url);
afterAll(() => sharedGateway.stop());

type Gateway = ReturnType<typeof gatewayClient>;

/** What a test runs on: its database, a gateway, and its shops, killed when the test finishes. */
interface Stage {
  t: TestDatabase;
  gateway: Gateway;
  /** The shops' environment: this gateway, a short lease, a busy completer. */
  fast: Record<string, string>;
  startShop(env: Record<string, string>, port?: number): Promise<ShopProcess>;
}

async function stage(test: TestContext, options: { ownGateway?: boolean } = {}): Promise<Stage> {
  const t = await testDatabaseForTest(test, { max: 3 });
  const gatewayProcess = options.ownGateway ? await spawnGateway((await testDatabaseForTest(test, { max: 1 })).url) : sharedGateway;
  const shops: ShopProcess[] = [];
  // Killed first (hooks run last-registered first): no shop outlives its database.
  test.onTestFinished(async () => {
    for (const shop of shops) await shop.kill();
    if (gatewayProcess !== sharedGateway) await gatewayProcess.stop();
  });
  // A short lease, so that a dead owner's key can be taken over within the test; a busy completer; a pool
  // of four (two shops of each of five tests at once fit in the server's connections).
  const fast = { GATEWAY_URL: gatewayProcess.url, SHOP_PAYMENT_LEASE: '2s', SHOP_COMPLETER_INTERVAL: '300ms', SHOP_CALL_TIMEOUT_MS: '1000', POOL_SIZE: '4' };
  return {
    t,
    gateway: gatewayClient(gatewayProcess.url),
    fast,
    async startShop(env, port) {
      const shop = await startShopProcess(t.url, sinkDir, env, port, [await bundled('examples/shop/server.ts', { beside: true })]);
      shops.push(shop);
      return shop;
    },
  };
}

interface Sent {
  key: string;
  user: string;
  amount: number;
}

const request = (p: Sent) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-user-id': p.user, 'idempotency-key': p.key },
  body: JSON.stringify({ amount: p.amount, currency: 'EUR' }),
});

/** A client that retries with the same key until it has an answer. */
async function payUntilAnswered(url: string, p: Sent) {
  const res = await fetchWithRetry(`${url}/payments`, request(p), { idempotencyKey: p.key, retries: 60, baseDelay: 50, maxDelay: 500, timeout: 10_000, maxRetryAfter: 500 });
  return { status: res.status, body: (await res.json()) as { id: string; chargeId: string } };
}

/** A client that sends once and never comes back, whatever happens. */
const payOnce = (url: string, p: Sent) => fetch(`${url}/payments`, request(p)).then((res) => res.status, () => undefined);

/** The payments' keys still started (not completed, not failed). */
const startedKeys = async ({ t }: Stage, keys: string[]) =>
  (await t.pool.query<{ key: string }>(`select key from idempotency_keys where key = any($1) and status <> 'completed'`, [keys])).rows.map((r) => r.key);

/**
 * Each key's story, from the shop's tables and the gateway's ledger: its
 * payments, their statuses, the succeeded charges whose reference they are,
 * and whether the payment names that charge.
 */
async function auditKeys({ t, gateway }: Stage, keys: string[]) {
  const ledger = await gateway.ledger();
  const { rows } = await t.pool.query<{ request_key: string; id: string; status: string; charge_id: string | null }>(
    `select request_key, id::text, status, charge_id from shop_payments where request_key = any($1)`,
    [keys],
  );
  const { rows: keyRows } = await t.pool.query<{ key: string; status: string }>(`select key, status from idempotency_keys where key = any($1)`, [keys]);
  return new Map(
    keys.map((key) => {
      const payments = rows.filter((r) => r.request_key === key);
      const charges = ledger.filter((c) => c.status === 'succeeded' && payments.some((p) => p.id === c.reference));
      return [
        key,
        {
          key: keyRows.find((r) => r.key === key)?.status ?? 'none',
          payments: payments.map((p) => p.status),
          charges: charges.length,
          namesItsCharge: payments.length === 1 && charges.length === 1 && payments[0]!.charge_id === charges[0]!.id,
          id: payments[0]?.id,
          chargeId: charges[0]?.id,
        },
      ];
    }),
  );
}

const PAID = { key: 'completed', payments: ['paid'], charges: 1, namesItsCharge: true };

/** Where a payment stands, as the database and the ledger show it, in the order a payment passes: what each crash point leaves. */
const STAGES = ['no key', 'claimed', 'intent recorded', 'charged, not recorded', 'charge recorded', 'marked paid', 'completed'] as const;
const STAGE_AT: Record<CrashPoint, (typeof STAGES)[number]> = {
  'before-claim': 'no key',
  'after-claim': 'claimed',
  'after-record-intent': 'intent recorded',
  'during-charge': 'charged, not recorded',
  'after-charge-before-record': 'charged, not recorded',
  'after-charge': 'charge recorded',
  'after-mark-paid': 'marked paid',
};

/**
 * The furthest stage any payment of `keys` reached. Every payment passes the
 * crash points in order and the first to reach the named one kills the shop,
 * so at the kill the furthest stage is the point's own: reached, and none past it.
 */
async function furthestStage({ t, gateway }: Stage, keys: string[]): Promise<(typeof STAGES)[number]> {
  const ledger = await gateway.ledger();
  const { rows } = await t.pool.query<{ status: string; charge_recorded: boolean; payment: string | null; payment_id: string | null }>(
    `select k.status, coalesce(k.steps ? 'charge', false) as charge_recorded, p.status as payment, p.id::text as payment_id
     from idempotency_keys k left join shop_payments p on p.request_key = k.key where k.key = any($1)`,
    [keys],
  );
  const stage = (r: (typeof rows)[number]) => {
    if (r.status === 'completed') return 'completed';
    if (r.payment === 'paid') return 'marked paid';
    if (r.charge_recorded) return 'charge recorded';
    if (ledger.some((c) => c.reference === r.payment_id)) return 'charged, not recorded';
    return r.payment ? 'intent recorded' : 'claimed';
  };
  return STAGES[Math.max(0, ...rows.map((r) => STAGES.indexOf(stage(r))))]!;
}

describe.concurrent('the shop killed with SIGKILL at every point of a payment through the gateway', () => {
  it.for(CRASH_POINTS)('at %s: a restart, the retries and the completer finish every payment, one charge per key', { timeout: 90_000 }, async (point, context) => {
    const { expect } = context;
    // During the call the gateway is slowed down: a gateway of the test's own.
    const s = await stage(context, { ownGateway: point === 'during-charge' });
    const { t, gateway } = s;
    const first = await s.startShop({ ...s.fast, SHOP_CRASH_AT: point });
    // During the call: the gateway charges, then holds its answer, and the shop dies waiting for it.
    if (point === 'during-charge') await gateway.setFaults({ slowRate: 1, slowMs: 5_000 });
    const user = `crash-${point}`;
    // The first payment's client sends once and never retries: only the completer can finish it.
    const abandoned: Sent = { key: randomUUID(), user, amount: 999 };
    const once = payOnce(first.url, abandoned);
    if (point !== 'before-claim') await settled(() => t.pool.query(`select 1 from idempotency_keys where key = $1`, [abandoned.key]), (r) => r.rowCount === 1);
    // Then eight clients that retry until answered, a double click on every other one.
    const retrying: Sent[] = Array.from({ length: 8 }, (_, i) => ({ key: randomUUID(), user, amount: 1_000 + i }));
    const answers = Promise.all(retrying.flatMap((p, i) => (i % 2 ? [p] : [p, p])).map(async (p) => ({ p, answer: await payUntilAnswered(first.url, p) })));

    // It died at the point (or, if no payment ever reached it, this fails instead of waiting forever).
    expect(await Promise.race([first.process.exited, sleep(20_000).then(() => 'still running')])).toMatchObject({ signal: 'SIGKILL' });
    // And it died at that point, not merely died: the furthest payment stands where the point leaves it.
    expect(await furthestStage(s, [abandoned.key, ...retrying.map((p) => p.key)])).toBe(STAGE_AT[point]);
    await gateway.setFaults({ slowRate: 0 });
    await s.startShop(s.fast, first.port);
    const answered = await answers;
    await once;
    const keys = [abandoned.key, ...retrying.map((p) => p.key)];
    expect(await settled(() => startedKeys(s, keys), (left) => left.length === 0)).toEqual([]);

    const audit = await auditKeys(s, keys);
    for (const p of retrying) expect(audit.get(p.key)).toMatchObject(PAID);
    // Every retrying client was told 201 with the payment and the charge the database and the ledger hold.
    for (const { p, answer } of answered) {
      expect(answer.status).toBe(201);
      expect(answer.body).toMatchObject({ id: audit.get(p.key)!.id, chargeId: audit.get(p.key)!.chargeId, status: 'paid' });
    }
    // The abandoned payment: killed before its claim, it left nothing; after it, the completer paid it once.
    expect(audit.get(abandoned.key)).toMatchObject(point === 'before-claim' ? { key: 'none', payments: [], charges: 0 } : PAID);
  });
});

describe.concurrent('a shop paused past its lease while the gateway call is out', () => {
  it('is taken over by another shop, which pays once; the paused owner, resumed, has its late write refused', async (context) => {
    const { expect } = context;
    const s = await stage(context);
    const { t } = s;
    const paused = await s.startShop({ ...s.fast, SHOP_PAUSE_AT: 'after-charge-before-record', SHOP_COMPLETER_INTERVAL: '1h' });
    const p: Sent = { key: randomUUID(), user: 'paused', amount: 4_242 };
    const ownersAnswer = fetch(`${paused.url}/payments`, request(p)).then(async (res) => ({ status: res.status, body: (await res.json()) as { code?: string } }));
    // The gateway charged and answered; the shop stopped (SIGSTOP) before recording it.
    await paused.process.waitFor(/paused at after-charge-before-record/);
    await s.startShop(s.fast);
    // The other shop's completer takes the key over once the lease ran out, asks the gateway, and completes it.
    expect(await settled(() => startedKeys(s, [p.key]), (left) => left.length === 0)).toEqual([]);
    const done = await auditKeys(s, [p.key]);
    expect(done.get(p.key)).toMatchObject(PAID);
    const { rows: before } = await t.pool.query(`select status, response, steps, recovery_point, attempts from idempotency_keys where key = $1`, [p.key]);

    paused.process.child.kill('SIGCONT');
    // The resumed owner's write of the charge's answer finds another owner's row: refused, and its client is told so.
    const answer = await ownersAnswer;
    expect(answer.status).toBe(409);
    expect(answer.body.code).toBe('IDEMPOTENCY_LEASE_LOST');
    const { rows: after } = await t.pool.query(`select status, response, steps, recovery_point, attempts from idempotency_keys where key = $1`, [p.key]);
    expect(after).toEqual(before);
    expect((await auditKeys(s, [p.key])).get(p.key)).toEqual(done.get(p.key));
    // The client's retry gets the completed answer: the taker's payment and its one charge.
    const retried = await payUntilAnswered(paused.url, p);
    expect(retried).toMatchObject({ status: 201, body: { id: done.get(p.key)!.id, chargeId: done.get(p.key)!.chargeId } });
  }, 90_000);
});

describe.concurrent('a paused owner resumed while the shop that took its payment over is itself mid-way', () => {
  it("has its late write refused by the owner token alone (the key is still started), and the taker's run pays once", async (context) => {
    const { expect } = context;
    const s = await stage(context);
    const { t } = s;
    // With the key completed, a late write would be refused for its status alone; here the key is still started under
    // the taker's token when the first owner wakes, so only the fencing stands between its write and the row.
    const paused = await s.startShop({ ...s.fast, SHOP_PAUSE_AT: 'after-charge-before-record', SHOP_COMPLETER_INTERVAL: '1h' });
    const p: Sent = { key: randomUUID(), user: 'paused-twice', amount: 4_343 };
    const ownersAnswer = fetch(`${paused.url}/payments`, request(p)).then(async (res) => ({ status: res.status, body: (await res.json()) as { code?: string } }));
    await paused.process.waitFor(/paused at after-charge-before-record/);
    // The taker's completer takes the key over, records the charge the gateway reports, and stops before marking it paid.
    const taker = await s.startShop({ ...s.fast, SHOP_PAUSE_AT: 'after-charge' });
    await taker.process.waitFor(/paused at after-charge/);
    const row = () => t.pool.query(`select status, owner_token, response, steps, recovery_point, attempts from idempotency_keys where key = $1`, [p.key]).then((r) => r.rows);
    const before = await row();
    expect(before).toMatchObject([{ status: 'started', recovery_point: 'charge' }]);

    paused.process.child.kill('SIGCONT');
    const answer = await ownersAnswer;
    expect(answer.status).toBe(409);
    expect(answer.body.code).toBe('IDEMPOTENCY_LEASE_LOST');
    expect(await row()).toEqual(before);
    expect((await auditKeys(s, [p.key])).get(p.key)).toMatchObject({ key: 'started', payments: ['pending'], charges: 1 });

    taker.process.child.kill('SIGCONT');
    expect(await settled(() => startedKeys(s, [p.key]), (left) => left.length === 0)).toEqual([]);
    expect((await auditKeys(s, [p.key])).get(p.key)).toMatchObject(PAID);
    const retried = await payUntilAnswered(paused.url, p);
    expect(retried).toMatchObject({ status: 201, body: { chargeId: (await auditKeys(s, [p.key])).get(p.key)!.chargeId } });
  }, 90_000);
});

describe.concurrent('the completer as a process of its own (drizzle-idempotency complete)', () => {
  it('finishes a payment whose shop died after the gateway charged, with no client and no shop left: one charge', async (context) => {
    const { expect } = context;
    const s = await stage(context);
    const { t } = s;
    const shop = await s.startShop({ ...s.fast, SHOP_CRASH_AT: 'after-charge-before-record' });
    const p: Sent = { key: randomUUID(), user: 'cli', amount: 777 };
    await payOnce(shop.url, p);
    expect(await shop.process.exited).toMatchObject({ signal: 'SIGKILL' });
    // A pass skips a key whose lease is live: wait for the dead shop's lease to run out.
    await settled(() => t.pool.query(`select 1 from idempotency_keys where key = $1 and locked_until <= now()`, [p.key]), (r) => r.rowCount === 1);

    const cli = launch(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'complete', '--workflows', 'examples/shop/workflows.ts'], {
      env: { ...process.env, DATABASE_URL: t.url, GATEWAY_URL: s.fast.GATEWAY_URL },
    });
    expect(await cli.finished, cli.output()).toMatchObject({ code: 0 });
    expect(cli.output()).toMatch(/complete: 1 completed, 0 failed/);
    expect((await auditKeys(s, [p.key])).get(p.key)).toMatchObject(PAID);
  }, 60_000);
});
