import { describe, expect, it } from 'vitest';
import { runDemo, QUICK } from '../../examples/shop/demo.js';
import { testDatabase } from '../support/db.js';
import { count } from '../support/fixtures.js';

const t = await testDatabase({ migrated: false, max: 5 });

describe('the demo (npm start -- --quick)', () => {
  it('survives its retry storm with one effect per key, by the database\'s own account', async () => {
    const report = await runDemo(t.url, { ...QUICK, payments: 100, orders: 60, emails: 30 });
    // The storm did hurt: answers were lost and retried, duplicates were sent.
    expect(report.dropped.ours).toBeGreaterThan(0);
    expect(report.ours.replays).toBeGreaterThan(0);

    // The audit, asked of the database here rather than read from the report.
    const dupes = async (table: string, where = 'true') =>
      (await t.pool.query(`select request_key from ${table} where ${where} group by request_key having count(*) > 1`)).rowCount;
    expect(await dupes('shop_payments', `channel = 'idempotent'`)).toBe(0);
    expect(await dupes('shop_orders')).toBe(0);
    expect((await t.pool.query(`select data->>'ref' from pgboss.job where name = 'welcome-email' group by 1 having count(*) > 1`)).rowCount).toBe(0);
    const { rows: keys } = await t.pool.query(`select count(distinct request_key)::int as n from shop_payments where channel = 'idempotent'`);
    expect(keys[0].n).toBe(100);
    const { rows: stock } = await t.pool.query<{ sku: string; stock: number; sold: number }>(
      `select i.sku, i.stock, coalesce(sum(oi.quantity), 0)::int as sold
       from shop_inventory i left join shop_order_items oi using (sku) group by i.sku, i.stock`,
    );
    for (const s of stock) {
      expect(s.stock).toBeGreaterThanOrEqual(0);
      expect(s.stock + s.sold).toBe(QUICK.stock);
    }
    // E-mails: one welcome job per request key, one confirmation job per order, each completed and logged once.
    const { rows: jobs } = await t.pool.query(
      `select name, count(*)::int as n, count(*) filter (where state = 'completed')::int as completed from pgboss.job group by name order by name`,
    );
    const { rows: orders } = await t.pool.query(`select count(*)::int as n from shop_orders`);
    expect(jobs).toEqual([
      { name: 'order-confirmation', n: orders[0].n, completed: orders[0].n },
      { name: 'welcome-email', n: 30, completed: 30 },
    ]);
    expect(await t.pool.query(`select job_id from shop_email_log group by job_id having count(*) > 1`).then((r) => r.rowCount)).toBe(0);
    expect(await count(t.pool, 'shop_email_log')).toBe(30 + orders[0].n);
    // The mail API delivered one e-mail per order and per welcome request, though it failed and workers crashed on the way.
    expect(report.mail).toMatchObject({ delivered: 30 + orders[0].n, deliveredTwice: 0, neverDelivered: 0 });
    expect(report.mail.outages + report.mail.crashes).toBeGreaterThan(0);
    // A mail worker process was killed with SIGKILL after sending an e-mail in its batch: every send whose
    // transaction rolled back (a crash, the kill) was made again on redelivery, and the mail API dropped it.
    expect(report.mail.workersKilled).toBe(1);
    expect(report.mail.repeatsDropped).toBeGreaterThanOrEqual(report.mail.crashes + 1);
    expect(await t.pool.query(`select 1 from idempotency_keys where status <> 'completed'`).then((r) => r.rowCount)).toBe(0);
    // Payments went through the gateway (its own process, its faults on): in its ledger, one succeeded charge
    // per paid payment key, under that payment's id, and none for a declined one; no payment left pending.
    expect(report.gateway.stats.dropped + report.gateway.stats.slowed + report.gateway.stats.failed500).toBeGreaterThan(0);
    const { rows: perKey } = await t.pool.query<{ status: string; charges: number; named: boolean }>(
      `select p.status, count(c.id)::int as charges, bool_and(c.id is null or c.id = p.charge_id) as named
       from shop_payments p left join gateway.gateway_charges c on c.reference = p.id::text and c.status = 'succeeded'
       where p.channel = 'idempotent' group by p.request_key, p.status`,
    );
    expect(perKey).toHaveLength(100);
    for (const key of perKey) expect(key).toEqual(key.status === 'paid' ? { status: 'paid', charges: 1, named: true } : { status: 'declined', charges: 0, named: true });
    expect(report.gateway).toMatchObject({ keysWithoutOneCharge: 0, chargesUnaccounted: 0, pendingPayments: 0 });
    expect(report.broken).toEqual([]);
  });
});
