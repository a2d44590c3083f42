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
    expect(await t.pool.query(`select 1 from idempotency_keys where status = 'started'`).then((r) => r.rowCount)).toBe(0);
    expect(report.broken).toEqual([]);
  });
});
