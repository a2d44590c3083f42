import { randomUUID } from 'node:crypto';
import { drizzle } from 'drizzle-orm/node-postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { startGateway } from '../../examples/gateway/app.js';
import { downstreamKey } from '../../src/index.js';
import { gatewayClient } from '../../examples/gateway/client.js';
import { migrateGateway } from '../../examples/gateway/store.js';
import { shopApp } from '../../examples/shop/app.js';
import { startShopBoss } from '../../examples/shop/boss.js';
import { startMailApi } from '../../examples/shop/mail-api.js';
import { startMailWorkers } from '../../examples/shop/mail-worker.js';
import { paymentWorkflow } from '../../examples/shop/payment-workflow.js';
import { migrateAll } from '../../examples/shop/setup.js';
import { testDatabase } from '../support/db.js';
import { count } from '../support/fixtures.js';
import { listen } from '../support/http.js';

const t = await testDatabase({ max: 50 });
await migrateAll(drizzle({ client: t.pool }));
// Connections the database drop ends after the file are no news.
const boss = await startShopBoss(t.url, () => {});
await migrateGateway(drizzle({ client: t.pool }));
const fakeGateway = await startGateway(drizzle({ client: t.pool }));
const gateway = gatewayClient(fakeGateway.url);
const shop = await listen(shopApp(drizzle({ client: t.pool }), boss, { gateway, workflow: paymentWorkflow(gateway) }));
afterAll(async () => {
  await shop.close();
  await fakeGateway.close();
  await boss.stop({ graceful: false, wait: true });
});

async function call(method: string, path: string, options: { user?: string; key?: string; body?: unknown } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (options.user !== undefined) headers['x-user-id'] = options.user;
  if (options.key !== undefined) headers['idempotency-key'] = options.key;
  const res = await fetch(`${shop.url}${path}`, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

describe('POST /payments', () => {
  it('charges once per key and replays the 201 with Idempotent-Replayed', async () => {
    const first = await call('POST', '/payments', { user: 'alice', key: 'pay-1', body: { amount: 1250, currency: 'EUR' } });
    const again = await call('POST', '/payments', { user: 'alice', key: 'pay-1', body: { amount: 1250, currency: 'EUR' } });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ amount: 1250, currency: 'EUR', status: 'paid', declineCode: null });
    expect(Object.keys(first.body!).sort()).toEqual(['amount', 'chargeId', 'createdAt', 'currency', 'declineCode', 'id', 'status']);
    expect(first.headers.get('location')).toBe(`/payments/${first.body!.id}`);
    expect(again).toMatchObject({ status: 201, body: first.body });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await count(t.pool, 'shop_payments', `request_key = 'pay-1'`)).toBe(1);
    // The gateway charged it once, under the payment's id, and the payment names that charge.
    const charges = (await gateway.ledger()).filter((c) => c.reference === first.body!.id);
    expect(charges).toEqual([expect.objectContaining({ id: first.body!.chargeId, amount: 1250, currency: 'EUR', status: 'succeeded' })]);
  });

  it('answers 402 when the gateway declines, stores it, and replays it without asking the gateway again', async () => {
    const body = { amount: 2_000_000, currency: 'EUR' };
    const first = await call('POST', '/payments', { user: 'erin', key: 'pay-declined', body });
    const again = await call('POST', '/payments', { user: 'erin', key: 'pay-declined', body });
    expect(first.status).toBe(402);
    expect(first.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(first.body).toMatchObject({ code: 'PAYMENT_DECLINED' });
    expect(again).toMatchObject({ status: 402, body: first.body });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    const { rows } = await t.pool.query(`select id::text, status, decline_code from shop_payments where request_key = 'pay-declined'`);
    expect(rows).toEqual([{ id: expect.any(String), status: 'declined', decline_code: 'card_declined' }]);
    const charges = (await gateway.ledger()).filter((c) => c.reference === rows[0].id);
    expect(charges.map((c) => c.status)).toEqual(['declined']);
  });

  it("scopes keys by X-User-Id: bob's key never replays alice's payment", async () => {
    const alice = await call('POST', '/payments', { user: 'alice', key: 'shared', body: { amount: 100, currency: 'EUR' } });
    const bob = await call('POST', '/payments', { user: 'bob', key: 'shared', body: { amount: 100, currency: 'EUR' } });
    expect(bob.status).toBe(201);
    expect(bob.body!.id).not.toBe(alice.body!.id);
    expect(bob.headers.get('idempotent-replayed')).toBeNull();
    const bobs = await call('GET', '/payments', { user: 'bob' });
    expect((bobs.body!.payments as { id: string }[]).map((p) => p.id)).toEqual([bob.body!.id]);
    expect((await call('GET', `/payments/${alice.body!.id}`, { user: 'bob' })).status).toBe(404);
    expect((await call('GET', `/payments/${alice.body!.id}`, { user: 'alice' })).body).toEqual(alice.body);
    expect(await count(t.pool, 'shop_payments', `request_key = 'shared'`)).toBe(2);
  });

  it('answers 422 to the same key with another amount, and charges nothing more', async () => {
    await call('POST', '/payments', { user: 'carol', key: 'pay-2', body: { amount: 500, currency: 'EUR' } });
    const reused = await call('POST', '/payments', { user: 'carol', key: 'pay-2', body: { amount: 900, currency: 'EUR' } });
    expect(reused.status).toBe(422);
    expect(reused.body).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    expect(await count(t.pool, 'shop_payments', `request_key = 'pay-2'`)).toBe(1);
  });

  it('never answers "declined" when the gateway holds another request under the payment\'s downstream key: in doubt, the key stays started', async () => {
    // An earlier run of this key charged under its downstream key for another payment row (the key was then evicted, or
    // expired and was sent again): the gateway answers 422 to the new run. A charge stands under the key, so the new
    // payment is neither declined (the client would pay another way) nor paid with a charge that is not its own.
    const earlier = await gateway.charge({ amount: 700, currency: 'EUR', reference: randomUUID() }, { idempotencyKey: downstreamKey({ scope: 'frank', key: 'pay-evicted', step: 'charge' }) });
    const res = await call('POST', '/payments', { user: 'frank', key: 'pay-evicted', body: { amount: 700, currency: 'EUR' } });
    expect(res.status).toBe(503);
    const { rows } = await t.pool.query(`select status, charge_id from shop_payments where request_key = 'pay-evicted'`);
    expect(rows).toEqual([{ status: 'pending', charge_id: null }]);
    const { rows: keys } = await t.pool.query(`select status from idempotency_keys where scope = 'frank' and key = 'pay-evicted'`);
    expect(keys).toEqual([{ status: 'started' }]);
    // The gateway still holds the one earlier charge under that key, and nothing more.
    expect((await gateway.ledger()).filter((c) => c.idempotencyKey === earlier.idempotencyKey)).toEqual([earlier]);
  });

  it.each([
    ['a missing key', { user: 'dave', body: { amount: 5, currency: 'EUR' } }, 400],
    ['a zero amount', { user: 'dave', key: 'bad-1', body: { amount: 0, currency: 'EUR' } }, 400],
    ['a fractional amount', { user: 'dave', key: 'bad-2', body: { amount: 1.5, currency: 'EUR' } }, 400],
    ['an unknown currency', { user: 'dave', key: 'bad-3', body: { amount: 5, currency: 'XYZ1' } }, 400],
    ['no X-User-Id', { key: 'bad-4', body: { amount: 5, currency: 'EUR' } }, 401],
  ])('refuses %s before claiming any key', async (_name, options, status) => {
    const keysBefore = await count(t.pool, 'idempotency_keys');
    const res = await call('POST', '/payments', options);
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await count(t.pool, 'idempotency_keys')).toBe(keysBefore);
    expect(await count(t.pool, 'shop_payments', `user_id = 'dave'`)).toBe(0);
  });
});

describe('inventory', () => {
  it('sets and reads stock with PUT and GET, no key needed', async () => {
    expect((await call('PUT', '/inventory/gizmo', { body: { stock: 7 } })).body).toEqual({ sku: 'gizmo', stock: 7 });
    expect((await call('PUT', '/inventory/gizmo', { body: { stock: 7 } })).body).toEqual({ sku: 'gizmo', stock: 7 });
    expect((await call('GET', '/inventory/gizmo')).body).toEqual({ sku: 'gizmo', stock: 7 });
    expect((await call('PUT', '/inventory/gizmo', { body: { stock: -1 } })).status).toBe(400);
  });

  it('never goes below zero under 40 concurrent reserves, and replays the stored OUT_OF_STOCK', async () => {
    await call('PUT', '/inventory/widget', { body: { stock: 25 } });
    const reserve = (i: number) => call('POST', '/inventory/widget/reserve', { user: 'erin', key: `reserve-${i}`, body: { quantity: 3 } });
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => reserve(i)));
    const ok = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status === 409);
    expect(ok).toHaveLength(8); // 8 x 3 = 24 of 25
    expect(refused).toHaveLength(32);
    expect(refused[0]!.body).toMatchObject({ code: 'OUT_OF_STOCK', status: 409 });
    expect(new Set(ok.map((a) => a.body!.remaining))).toEqual(new Set([22, 19, 16, 13, 10, 7, 4, 1]));

    const replays = await Promise.all(Array.from({ length: 40 }, (_, i) => reserve(i)));
    expect(replays.map((r) => [r.status, r.body])).toEqual(answers.map((a) => [a.status, a.body]));
    expect(replays.every((r) => r.headers.get('idempotent-replayed') === 'true')).toBe(true);
    expect((await call('GET', '/inventory/widget')).body).toEqual({ sku: 'widget', stock: 1 });
  });
});

describe('POST /orders', () => {
  it('reserves every item or none', async () => {
    await call('PUT', '/inventory/bolt', { body: { stock: 5 } });
    await call('PUT', '/inventory/nut', { body: { stock: 1 } });
    const refused = await call('POST', '/orders', { user: 'fay', key: 'order-1', body: { items: [{ sku: 'bolt', quantity: 2 }, { sku: 'nut', quantity: 2 }] } });
    expect(refused).toMatchObject({ status: 409, body: { code: 'OUT_OF_STOCK' } });
    expect((await call('GET', '/inventory/bolt')).body).toEqual({ sku: 'bolt', stock: 5 });

    const placed = await call('POST', '/orders', { user: 'fay', key: 'order-2', body: { items: [{ sku: 'bolt', quantity: 2 }, { sku: 'nut', quantity: 1 }] } });
    const replay = await call('POST', '/orders', { user: 'fay', key: 'order-2', body: { items: [{ sku: 'bolt', quantity: 2 }, { sku: 'nut', quantity: 1 }] } });
    expect(placed.status).toBe(201);
    expect(replay).toMatchObject({ status: 201, body: placed.body });
    expect((await call('GET', '/inventory/bolt')).body).toEqual({ sku: 'bolt', stock: 3 });
    expect((await call('GET', '/inventory/nut')).body).toEqual({ sku: 'nut', stock: 0 });
    expect(await count(t.pool, 'shop_orders', `user_id = 'fay'`)).toBe(1);
  });
});

describe('POST /notifications/welcome', () => {
  it('enqueues one pg-boss job per key, and the mail API delivers the e-mail once though it failed and a worker crashed', async () => {
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => call('POST', '/notifications/welcome', { user: 'gus', key: 'welcome-gus', body: { email: 'gus@example.test' } })),
    );
    // The route rejects duplicates in flight: 409 + Retry-After, then the retry replays.
    const accepted = answers.filter((a) => a.status === 202);
    const rejected = answers.filter((a) => a.status !== 202);
    expect(accepted.length).toBeGreaterThan(0);
    for (const r of rejected) {
      expect(r).toMatchObject({ status: 409, body: { code: 'IDEMPOTENCY_IN_FLIGHT' } });
      expect(r.headers.get('retry-after')).toBe('1');
    }
    const retried = await call('POST', '/notifications/welcome', { user: 'gus', key: 'welcome-gus', body: { email: 'gus@example.test' } });
    expect(new Set([...accepted, retried].map((a) => JSON.stringify(a.body))).size).toBe(1);
    const jobId = retried.body!.jobId as string;
    expect(await count(t.pool, 'pgboss.job', `name = 'welcome-email'`)).toBe(1);

    // The mail API answers one send with 500, and the welcome's first handler run crashes after sending: redelivered, it sends again.
    const mail = await startMailApi();
    mail.failNext(1);
    let runs = 0;
    const crashAfterSend = (job: { data: { ref: string } }) => job.data.ref === 'welcome-gus' && ++runs === 1;
    const workers = await startMailWorkers(drizzle({ client: t.pool }), boss, mail.url, { crashAfterSend });
    try {
      await workers.drain();
    } finally {
      await mail.close();
    }
    expect(workers.crashes()).toBe(1);
    expect(mail.stats()).toMatchObject({ outages: 1, duplicates: 1 }); // the repeat after the crash, dropped by the API
    expect(mail.deliveries().filter((d) => d.ref === 'welcome-gus')).toEqual([
      { key: expect.stringMatching(/^di-/), to: 'gus@example.test', subject: 'Welcome to the shop', ref: 'welcome-gus' },
    ]);
    expect((await boss.getJobById('welcome-email', jobId))?.state).toBe('completed');
    expect(await count(t.pool, 'shop_email_log', `ref = 'welcome-gus'`)).toBe(1);
  });
});

describe('POST /orders and its confirmation e-mail', () => {
  it('enqueues the confirmation with the order, once per order, and none for a refused order', async () => {
    await call('PUT', '/inventory/cog', { body: { stock: 1 } });
    const placed = await call('POST', '/orders', { user: 'hal', key: 'order-cog', body: { items: [{ sku: 'cog', quantity: 1 }] } });
    await call('POST', '/orders', { user: 'hal', key: 'order-cog', body: { items: [{ sku: 'cog', quantity: 1 }] } });
    const refused = await call('POST', '/orders', { user: 'hal', key: 'order-cog-2', body: { items: [{ sku: 'cog', quantity: 1 }] } });
    expect([placed.status, refused.status]).toEqual([201, 409]);
    const { rows } = await t.pool.query(`select data from pgboss.job where name = 'order-confirmation' and data->>'to' = 'hal@shop.example'`);
    expect(rows).toEqual([{ data: { to: 'hal@shop.example', ref: placed.body!.id } }]);
  });
});
