import type pg from 'pg';
import type { Charge } from '../gateway/client.js';
import { PAYMENT_WORKFLOW } from './payment-workflow.js';

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
  /** Keys recorded as failed: their clients were told 500 and nothing took effect. */
  keysFailed: number;
}

async function one<T>(pool: pg.Pool, text: string, params: unknown[] = []): Promise<T> {
  return (await pool.query(text, params)).rows[0] as T;
}

/** Effects per request key, from the tables themselves. */
export async function auditShop(pool: pg.Pool, initialStock: Record<string, number>): Promise<ShopAudit> {
  const pay = await one<{ n: number; keys: number; naive: number; naive_keys: number }>(
    pool,
    // A key is the user's (the shop scopes keys by X-User-Id): two users who chose one key made two payments, not a duplicate.
    `select count(*) filter (where channel = 'idempotent')::int as n,
            count(distinct (user_id, request_key)) filter (where channel = 'idempotent' and request_key is not null)::int as keys,
            count(*) filter (where channel = 'naive')::int as naive,
            count(distinct (user_id, request_key)) filter (where channel = 'naive' and request_key is not null)::int as naive_keys
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
  const keys = await one<{ stored: number; started: number; failed: number }>(
    pool,
    `select count(*) filter (where status = 'completed')::int as stored, count(*) filter (where status = 'started')::int as started,
            count(*) filter (where status = 'failed')::int as failed
     from idempotency_keys`,
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
    keysFailed: keys.failed,
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

/** The gateway's ledger against the shop's payments: money taken per payment key. */
export interface GatewayAudit {
  /** Succeeded charges in the ledger that are not the naive endpoint's: the idempotent endpoint's, and any that name no payment at all. */
  charges: number;
  /** Payment keys answered paid, and declined (402, nothing charged). */
  paidKeys: number;
  declinedKeys: number;
  /** Payment keys (per user) whose succeeded charges are not exactly one (paid) or not zero (declined). */
  keysWithoutOneCharge: number;
  /** Succeeded charges that no paid payment names (its charge_id): money taken that the shop does not know of. */
  chargesUnaccounted: number;
  /** Idempotent payments still pending: a workflow never finished. */
  pendingPayments: number;
  /** Payment keys completed (their clients answered) without exactly one payment of their user and key: told 201 or 402 for nothing the shop recorded. */
  keysWithoutPayment: number;
  /** The naive endpoint: its charges, and how many more than the keys its clients sent. */
  naiveCharges: number;
  naiveDuplicateCharges: number;
}

/**
 * Compares the gateway's ledger (every charge, from `GET /v1/ledger`) with the
 * shop's payments: one succeeded charge per paid payment key, none per
 * declined one, none the shop does not know of.
 *
 * @example
 * const audit = await auditGateway(pool, await gateway.ledger());
 */
export async function auditGateway(pool: pg.Pool, ledger: readonly Charge[]): Promise<GatewayAudit> {
  const { rows } = await pool.query<{ id: string; channel: string; user_id: string; request_key: string; status: string; charge_id: string | null }>(
    `select id::text, channel, user_id, request_key, status, charge_id from shop_payments`,
  );
  const charged = new Map<string, Charge[]>();
  for (const c of ledger) if (c.status === 'succeeded') charged.set(c.reference, [...(charged.get(c.reference) ?? []), c]);
  const keys = new Map<string, { channel: string; statuses: Set<string>; charges: number }>();
  const known = new Set<string>();
  for (const p of rows) {
    // Per user and key, as the shop scopes its keys.
    const id = JSON.stringify([p.channel, p.user_id, p.request_key]);
    const k = keys.get(id) ?? { channel: p.channel, statuses: new Set(), charges: 0 };
    k.statuses.add(p.status);
    k.charges += charged.get(p.id)?.length ?? 0;
    keys.set(id, k);
    if (p.status === 'paid' && p.charge_id) known.add(p.charge_id);
  }
  const ours = [...keys.values()].filter((k) => k.channel === 'idempotent');
  const naive = [...keys.values()].filter((k) => k.channel === 'naive');
  const idOf = new Map(rows.map((p) => [p.id, p]));
  // Every charge but the naive endpoint's is ours to account for: one whose reference names no payment at all is money taken that the shop knows nothing of.
  const oursCharges = ledger.filter((c) => c.status === 'succeeded' && idOf.get(c.reference)?.channel !== 'naive');
  const naiveCharges = naive.reduce((n, k) => n + k.charges, 0);
  // From the keys' side: a key answered with no payment behind it is invisible to the counts above, which start from payments.
  const unbacked = await pool.query<{ n: number }>(
    `select count(*)::int as n from idempotency_keys k
     where k.workflow = $1 and k.status = 'completed'
       and (select count(*) from shop_payments p where p.channel = 'idempotent' and p.user_id = k.scope and p.request_key = k.key) <> 1`,
    [PAYMENT_WORKFLOW],
  );
  return {
    charges: oursCharges.length,
    paidKeys: ours.filter((k) => k.statuses.has('paid')).length,
    declinedKeys: ours.filter((k) => k.statuses.has('declined')).length,
    keysWithoutOneCharge: ours.filter((k) => k.charges !== (k.statuses.has('paid') ? 1 : 0)).length,
    chargesUnaccounted: oursCharges.filter((c) => !known.has(c.id)).length,
    pendingPayments: ours.filter((k) => k.statuses.has('pending')).length,
    keysWithoutPayment: unbacked.rows[0]!.n,
    naiveCharges,
    naiveDuplicateCharges: naiveCharges - naive.filter((k) => k.charges > 0).length,
  };
}

/** Every invariant the demo promises, with the numbers that break it. Empty when all hold. */
export function brokenInvariants(audit: ShopAudit, mail: MailAudit, gateway?: GatewayAudit): string[] {
  const broken: string[] = [];
  if (gateway?.keysWithoutOneCharge) broken.push(`${gateway.keysWithoutOneCharge} payment keys without exactly one charge in the gateway's ledger`);
  if (gateway?.chargesUnaccounted) broken.push(`${gateway.chargesUnaccounted} charges in the gateway's ledger that no paid payment names`);
  if (gateway?.pendingPayments) broken.push(`${gateway.pendingPayments} payments left pending`);
  if (gateway?.keysWithoutPayment) broken.push(`${gateway.keysWithoutPayment} payment keys answered without exactly one payment of their user and key`);
  if (audit.duplicatePayments) broken.push(`${audit.duplicatePayments} duplicate payments`);
  if (audit.duplicateOrders) broken.push(`${audit.duplicateOrders} duplicate orders`);
  if (audit.duplicateWelcomeJobs) broken.push(`${audit.duplicateWelcomeJobs} duplicate welcome e-mails queued`);
  if (audit.ordersWithoutOneConfirmation) broken.push(`${audit.ordersWithoutOneConfirmation} orders without exactly one confirmation job`);
  if (audit.emailJobsUnfinished) broken.push(`${audit.emailJobsUnfinished} mail jobs not completed`);
  if (audit.emailJobsWithoutOneLogRow) broken.push(`${audit.emailJobsWithoutOneLogRow} mail jobs without exactly one shop_email_log row`);
  if (mail.deliveredTwice) broken.push(`${mail.deliveredTwice} e-mails delivered twice`);
  if (mail.neverDelivered) broken.push(`${mail.neverDelivered} e-mails never delivered`);
  if (audit.keysStarted) broken.push(`${audit.keysStarted} keys left in progress`);
  if (audit.keysFailed) broken.push(`${audit.keysFailed} keys recorded as failed`);
  for (const s of audit.stock) {
    if (s.left < 0) broken.push(`${s.sku}: stock ${s.left} is negative`);
    if (s.initial - s.sold !== s.left) broken.push(`${s.sku}: ${s.initial} - ${s.sold} sold != ${s.left} left`);
  }
  return broken;
}
