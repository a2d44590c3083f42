import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type PgBoss from 'pg-boss';
import { ledger, migrateGateway } from '../../examples/gateway/store.js';
import { auditGateway, auditShop, brokenInvariants } from '../../examples/shop/audit.js';
import { startShopBoss } from '../../examples/shop/boss.js';
import { migrateAll } from '../../examples/shop/setup.js';
import { testDatabase } from '../support/db.js';

// The demo's audit is the proof that the storm charged once per key: it must
// fail whenever the shop and the gateway's ledger disagree, and only then.
// Each case writes the disagreement itself into the shop's tables and the
// gateway's ledger, then asks the audit.
const t = await testDatabase({ migrated: false, max: 5 });
let boss: PgBoss;
beforeAll(async () => {
  await migrateAll(t.db);
  await migrateGateway(t.db);
  // The shop's audit also counts mail jobs: pg-boss's real tables, no jobs.
  boss = await startShopBoss(t.url, () => {}, { supervise: false });
});
afterAll(() => boss?.stop({ graceful: false, wait: true }));
beforeEach(() => t.pool.query('truncate shop_payments, gateway.gateway_charges, idempotency_keys'));

const NO_MAIL = { delivered: 0, deliveredTwice: 0, neverDelivered: 0 };

/** Every invariant the demo reports broken for what the tables hold now. */
async function broken(): Promise<string[]> {
  return brokenInvariants(await auditShop(t.pool, {}), NO_MAIL, await auditGateway(t.pool, await ledger(t.db)));
}

/** A succeeded charge in the gateway's ledger with `reference`; its id. */
async function charge(reference: string): Promise<string> {
  const id = `ch_${randomUUID()}`;
  await t.pool.query(
    `insert into gateway.gateway_charges (id, idempotency_key, fingerprint, amount, currency, reference, status) values ($1, $2, 'f', 1250, 'EUR', $3, 'succeeded')`,
    [id, `di-${randomUUID()}`, reference],
  );
  return id;
}

/** A payment of the idempotent endpoint, paid by one charge of its own. */
async function paidOnce(user: string, requestKey: string): Promise<void> {
  const { rows } = await t.pool.query<{ id: string }>(
    `insert into shop_payments (user_id, amount, currency, channel, request_key, status) values ($1, 1250, 'EUR', 'idempotent', $2, 'pending') returning id::text`,
    [user, requestKey],
  );
  const id = rows[0]!.id;
  await t.pool.query(`update shop_payments set status = 'paid', charge_id = $1 where id = $2`, [await charge(id), id]);
}

describe("the demo's audit of the gateway's ledger against the shop's payments", () => {
  it('passes one paid payment per key, each with its one charge', async () => {
    await paidOnce('alice', randomUUID());
    await paidOnce('bob', randomUUID());
    expect(await broken()).toEqual([]);
  });

  it('fails on money taken for no payment of the shop: a charge whose reference names no payment', async () => {
    await paidOnce('alice', randomUUID());
    await charge(randomUUID());
    expect(await broken()).toContain("1 charges in the gateway's ledger that no paid payment names");
  });

  it('counts keys per user, as the shop scopes them: two users who chose the same key, each paid once, is clean', async () => {
    const key = randomUUID();
    await paidOnce('alice', key);
    await paidOnce('bob', key);
    expect(await broken()).toEqual([]);
  });

  it('still fails on two payments under one user and key', async () => {
    const key = randomUUID();
    await paidOnce('alice', key);
    await paidOnce('alice', key);
    expect(await broken()).toEqual(expect.arrayContaining(['1 duplicate payments', "1 payment keys without exactly one charge in the gateway's ledger"]));
  });

  it.each([
    ['started', '1 keys left in progress'],
    // A failed payment key told its client 500 and took no effect: not "once per key", though nothing is pending.
    ['failed', '1 keys recorded as failed'],
  ])('fails on a key left %s', async (status, message) => {
    await paidOnce('alice', randomUUID());
    await t.pool.query(`insert into idempotency_keys (scope, key, status, expires_at) values ('bob', $1, $2, now() + interval '1 day')`, [randomUUID(), status]);
    expect(await broken()).toContain(message);
  });

  it('fails on a payment key answered with no payment behind it: a client told 201 for money never taken', async () => {
    await paidOnce('alice', randomUUID());
    await t.pool.query(
      `insert into idempotency_keys (scope, key, status, workflow, response, expires_at) values ('bob', $1, 'completed', 'shop.pay', '{"status": 201}', now() + interval '1 day')`,
      [randomUUID()],
    );
    expect(await broken()).toContain('1 payment keys answered without exactly one payment of their user and key');
  });
});
