import { and, desc, eq } from 'drizzle-orm';
import type { ShopDb } from './db.js';
import { payments } from './schema.js';

export interface PaymentInput {
  amount: number;
  currency: string;
}

export interface Payment {
  id: string;
  amount: number;
  currency: string;
  createdAt: string;
}

const toPayment = (row: typeof payments.$inferSelect): Payment => ({
  id: row.id,
  amount: row.amount,
  currency: row.currency,
  createdAt: row.createdAt.toISOString(),
});

/** Takes the money: one row in shop_payments. */
export async function createPayment(tx: ShopDb, userId: string, input: PaymentInput, requestKey: string | null, channel = 'idempotent'): Promise<Payment> {
  const [row] = await tx
    .insert(payments)
    .values({ userId, amount: input.amount, currency: input.currency, requestKey, channel })
    .returning();
  return toPayment(row!);
}

export async function listPayments(db: ShopDb, userId: string): Promise<Payment[]> {
  const rows = await db.select().from(payments).where(eq(payments.userId, userId)).orderBy(desc(payments.createdAt)).limit(100);
  return rows.map(toPayment);
}

export async function getPayment(db: ShopDb, userId: string, id: string): Promise<Payment | undefined> {
  const [row] = await db.select().from(payments).where(and(eq(payments.userId, userId), eq(payments.id, id)));
  return row && toPayment(row);
}
