import { sql } from 'drizzle-orm';
import { check, integer, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';

/**
 * A payment, charged through the payment gateway. `channel` tells the
 * idempotent endpoint from the naive one the demo contrasts it with. Its
 * status moves once: `pending` (recorded before the gateway is called, so a
 * crash leaves a trace to resume from) to `paid` (with the gateway's charge
 * id) or `declined` (with the gateway's reason).
 */
export const payments = pgTable(
  'shop_payments',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: text('user_id').notNull(),
    amount: integer('amount').notNull(),
    currency: text('currency').notNull(),
    channel: text('channel').notNull().default('idempotent'),
    // The key the client sent: lets the audit count effects per key.
    requestKey: text('request_key'),
    status: text('status').notNull().default('paid'),
    chargeId: text('charge_id'),
    declineCode: text('decline_code'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [check('shop_payments_status_check', sql`${t.status} in ('pending', 'paid', 'declined')`)],
);

/** Stock per SKU. The check is a last line of defence; the code never relies on it. */
export const inventory = pgTable(
  'shop_inventory',
  { sku: text('sku').primaryKey(), stock: integer('stock').notNull() },
  (t) => [check('shop_inventory_stock_check', sql`${t.stock} >= 0`)],
);

export const orders = pgTable('shop_orders', {
  id: uuid('id').primaryKey().defaultRandom(),
  userId: text('user_id').notNull(),
  requestKey: text('request_key'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

export const orderItems = pgTable(
  'shop_order_items',
  {
    orderId: uuid('order_id').notNull().references(() => orders.id),
    sku: text('sku').notNull(),
    quantity: integer('quantity').notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.sku] })],
);

/**
 * E-mails the mail workers sent: one row per pg-boss job, written in the
 * job's idempotent transaction. `ref` is what the e-mail is about (the
 * welcome request's key, the order's id); `mailKey` the key the mail API got.
 */
export const emailLog = pgTable('shop_email_log', {
  jobId: text('job_id').primaryKey(),
  kind: text('kind').notNull(),
  ref: text('ref').notNull(),
  mailKey: text('mail_key').notNull(),
  sentAt: timestamp('sent_at', { withTimezone: true }).notNull().defaultNow(),
});
