// What the README's order examples (transaction.ts, replay.ts, serializable.ts)
// have in common: a database, an orders table and the function that places an
// order, as an app would have them.
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, jsonb, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core';
import type { TransactionOf } from 'drizzle-idempotency';

export const db = drizzle(process.env.DATABASE_URL!);

/** A transaction on `db`, as `db.transaction()` and `withIdempotency` hand it over. */
export type Tx = TransactionOf<typeof db>;

export type Cart = { items: { sku: string; quantity: number }[] };

export const orders = pgTable('orders', {
  id: serial('id').primaryKey(),
  items: jsonb('items').$type<Cart['items']>().notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
export type Order = typeof orders.$inferSelect;

export const auditLog = pgTable('audit_log', {
  id: serial('id').primaryKey(),
  event: text('event').notNull(),
});

export const carts = pgTable('carts', {
  userId: text('user_id').primaryKey(),
  orderId: integer('order_id'),
});

export async function createOrder(tx: Tx, cart: Cart): Promise<Order> {
  const [order] = await tx.insert(orders).values({ items: cart.items }).returning();
  return order!;
}
