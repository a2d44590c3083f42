import type pg from 'pg';

/** The database's own account of the storm: the source of truth for every invariant. */
export interface ShopAudit {
  payments: number;
  paymentKeys: number;
  duplicatePayments: number;
  naivePayments: number;
  naivePaymentKeys: number;
  naiveDuplicatePayments: number;
  orders: number;
  duplicateOrders: number;
  stock: { sku: string; initial: number; sold: number; left: number }[];
  emailsQueued: number;
  duplicateEmails: number;
  emailsDelivered: number;
  keysStored: number;
  keysStarted: number;
}

async function one<T>(pool: pg.Pool, text: string, params: unknown[] = []): Promise<T> {
  return (await pool.query(text, params)).rows[0] as T;
}

/** Effects per request key, from the tables themselves. */
export async function auditShop(pool: pg.Pool, initialStock: Record<string, number>): Promise<ShopAudit> {
  const pay = await one<{ n: number; keys: number; naive: number; naive_keys: number }>(
    pool,
    `select count(*) filter (where channel = 'idempotent')::int as n,
            count(distinct request_key) filter (where channel = 'idempotent')::int as keys,
            count(*) filter (where channel = 'naive')::int as naive,
            count(distinct request_key) filter (where channel = 'naive')::int as naive_keys
     from shop_payments`,
  );
  const ord = await one<{ n: number; keys: number }>(pool, `select count(*)::int as n, count(distinct request_key)::int as keys from shop_orders`);
  const mail = await one<{ n: number; keys: number; delivered: number }>(
    pool,
    `select count(*)::int as n, count(distinct request_key)::int as keys, count(delivered_at)::int as delivered from shop_outbox`,
  );
  const keys = await one<{ stored: number; started: number }>(
    pool,
    `select count(*) filter (where status = 'completed')::int as stored, count(*) filter (where status = 'started')::int as started from idempotency_keys`,
  );
  const { rows } = await pool.query<{ sku: string; left: number; sold: number }>(
    `select i.sku, i.stock as left, coalesce(sum(oi.quantity), 0)::int as sold
     from shop_inventory i left join shop_order_items oi on oi.sku = i.sku group by i.sku, i.stock order by i.sku`,
  );
  return {
    payments: pay.n,
    paymentKeys: pay.keys,
    duplicatePayments: pay.n - pay.keys,
    naivePayments: pay.naive,
    naivePaymentKeys: pay.naive_keys,
    naiveDuplicatePayments: pay.naive - pay.naive_keys,
    orders: ord.n,
    duplicateOrders: ord.n - ord.keys,
    stock: rows.map((r) => ({ sku: r.sku, initial: initialStock[r.sku] ?? r.left + r.sold, sold: r.sold, left: r.left })),
    emailsQueued: mail.n,
    duplicateEmails: mail.n - mail.keys,
    emailsDelivered: mail.delivered,
    keysStored: keys.stored,
    keysStarted: keys.started,
  };
}

/** Every invariant the demo promises, with the numbers that break it. Empty when all hold. */
export function brokenInvariants(audit: ShopAudit, sinkLines: number, sinkDistinct: number): string[] {
  const broken: string[] = [];
  if (audit.duplicatePayments) broken.push(`${audit.duplicatePayments} duplicate payments`);
  if (audit.duplicateOrders) broken.push(`${audit.duplicateOrders} duplicate orders`);
  if (audit.duplicateEmails) broken.push(`${audit.duplicateEmails} duplicate e-mails queued`);
  if (sinkLines !== sinkDistinct) broken.push(`${sinkLines - sinkDistinct} e-mails delivered twice`);
  if (audit.emailsDelivered !== audit.emailsQueued) broken.push(`${audit.emailsQueued - audit.emailsDelivered} e-mails never delivered`);
  if (audit.keysStarted) broken.push(`${audit.keysStarted} keys left in progress`);
  for (const s of audit.stock) {
    if (s.left < 0) broken.push(`${s.sku}: stock ${s.left} is negative`);
    if (s.initial - s.sold !== s.left) broken.push(`${s.sku}: ${s.initial} - ${s.sold} sold != ${s.left} left`);
  }
  return broken;
}
