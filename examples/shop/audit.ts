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
  /** pg-boss jobs of the welcome queue, and how many share a request key with another. */
  welcomeJobs: number;
  duplicateWelcomeJobs: number;
  /** pg-boss jobs of the order-confirmation queue, and orders without exactly one. */
  confirmationJobs: number;
  ordersWithoutOneConfirmation: number;
  /** Mail jobs not completed, and jobs without exactly one row in shop_email_log. */
  emailJobsUnfinished: number;
  emailJobsWithoutOneLogRow: number;
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
  const mail = await one<{ welcome: number; welcome_refs: number; confirmations: number; unfinished: number; unlogged: number; unconfirmed: number }>(
    pool,
    `select count(*) filter (where name = 'welcome-email')::int as welcome,
            count(distinct data->>'ref') filter (where name = 'welcome-email')::int as welcome_refs,
            count(*) filter (where name = 'order-confirmation')::int as confirmations,
            count(*) filter (where state <> 'completed')::int as unfinished,
            count(*) filter (where (select count(*) from shop_email_log l where l.job_id = j.id::text) <> 1)::int as unlogged,
            (select count(*) from shop_orders o
              where (select count(*) from pgboss.job c where c.name = 'order-confirmation' and c.data->>'ref' = o.id::text) <> 1)::int as unconfirmed
     from pgboss.job j where name in ('welcome-email', 'order-confirmation')`,
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
    welcomeJobs: mail.welcome,
    duplicateWelcomeJobs: mail.welcome - mail.welcome_refs,
    confirmationJobs: mail.confirmations,
    ordersWithoutOneConfirmation: mail.unconfirmed,
    emailJobsUnfinished: mail.unfinished,
    emailJobsWithoutOneLogRow: mail.unlogged,
    keysStored: keys.stored,
    keysStarted: keys.started,
  };
}

/** What the fake mail API delivered, per `ref` (an order id, a welcome request's key). */
export interface MailAudit {
  delivered: number;
  /** Refs the API delivered more than one e-mail for. */
  deliveredTwice: number;
  /** Refs of mail jobs the API delivered nothing for. */
  neverDelivered: number;
}

/** Compares the mail API's deliveries with the mail jobs in the database. */
export async function auditMail(pool: pg.Pool, deliveries: readonly { ref?: string }[]): Promise<MailAudit> {
  const perRef = new Map<string, number>();
  for (const d of deliveries) perRef.set(d.ref ?? '', (perRef.get(d.ref ?? '') ?? 0) + 1);
  const { rows } = await pool.query<{ ref: string }>(`select data->>'ref' as ref from pgboss.job where name in ('welcome-email', 'order-confirmation')`);
  return {
    delivered: deliveries.length,
    deliveredTwice: [...perRef.values()].filter((n) => n > 1).length,
    neverDelivered: rows.filter((r) => !perRef.has(r.ref)).length,
  };
}

/** Every invariant the demo promises, with the numbers that break it. Empty when all hold. */
export function brokenInvariants(audit: ShopAudit, mail: MailAudit): string[] {
  const broken: string[] = [];
  if (audit.duplicatePayments) broken.push(`${audit.duplicatePayments} duplicate payments`);
  if (audit.duplicateOrders) broken.push(`${audit.duplicateOrders} duplicate orders`);
  if (audit.duplicateWelcomeJobs) broken.push(`${audit.duplicateWelcomeJobs} duplicate welcome e-mails queued`);
  if (audit.ordersWithoutOneConfirmation) broken.push(`${audit.ordersWithoutOneConfirmation} orders without exactly one confirmation job`);
  if (audit.emailJobsUnfinished) broken.push(`${audit.emailJobsUnfinished} mail jobs not completed`);
  if (audit.emailJobsWithoutOneLogRow) broken.push(`${audit.emailJobsWithoutOneLogRow} mail jobs without exactly one shop_email_log row`);
  if (mail.deliveredTwice) broken.push(`${mail.deliveredTwice} e-mails delivered twice`);
  if (mail.neverDelivered) broken.push(`${mail.neverDelivered} e-mails never delivered`);
  if (audit.keysStarted) broken.push(`${audit.keysStarted} keys left in progress`);
  for (const s of audit.stock) {
    if (s.left < 0) broken.push(`${s.sku}: stock ${s.left} is negative`);
    if (s.initial - s.sold !== s.left) broken.push(`${s.sku}: ${s.initial} - ${s.sold} sold != ${s.left} left`);
  }
  return broken;
}
