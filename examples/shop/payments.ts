import { and, desc, eq } from 'drizzle-orm';
import type { ShopDb } from './db.js';
import { payments } from './schema.js';

export interface PaymentInput {
  amount: number;
  currency: string;
}

export type PaymentStatus = 'pending' | 'paid' | 'declined';

export interface Payment {
  id: string;
  amount: number;
  currency: string;
  status: PaymentStatus;
  /** The gateway's charge, once paid. */
  chargeId: string | null;
  /** The gateway's reason, once declined. */
  declineCode: string | null;
  createdAt: string;
}

const toPayment = (row: typeof payments.$inferSelect): Payment => ({
  id: row.id,
  amount: row.amount,
  currency: row.currency,
  status: row.status as PaymentStatus,
  chargeId: row.chargeId,
  declineCode: row.declineCode,
  createdAt: row.createdAt.toISOString(),
});

/**
 * Takes the money in the database alone: one paid row, in the caller's
 * transaction (the benchmarks' payment, where no gateway is called).
 *
 * @example
 * await withIdempotency(tx, key, () => createPayment(tx, 'alice', { amount: 1250, currency: 'EUR' }, key));
 */
export async function createPayment(tx: ShopDb, userId: string, input: PaymentInput, requestKey: string | null, channel = 'idempotent'): Promise<Payment> {
  const [row] = await tx
    .insert(payments)
    .values({ userId, amount: input.amount, currency: input.currency, requestKey, channel })
    .returning();
  return toPayment(row!);
}

/**
 * Records a payment before the gateway charges it: its id is the charge's
 * reference, and a crash after this leaves a row to resume from.
 *
 * @example
 * const payment = await createPendingPayment(tx, 'alice', { amount: 1250, currency: 'EUR' }, 'key-1');
 */
export async function createPendingPayment(tx: ShopDb, userId: string, input: PaymentInput, requestKey: string | null, channel = 'idempotent'): Promise<Payment> {
  const [row] = await tx
    .insert(payments)
    .values({ userId, amount: input.amount, currency: input.currency, requestKey, channel, status: 'pending' })
    .returning();
  return toPayment(row!);
}

/** What the gateway answered: the charge that paid it, or why it declined. */
export type Settlement = { status: 'paid'; chargeId: string } | { status: 'declined'; declineCode: string };

/**
 * The gateway answered: `pending` becomes `paid` with the charge's id, or
 * `declined` with the gateway's reason. Only a pending payment moves, so a
 * second call changes nothing and answers undefined.
 *
 * @example
 * const paid = await settlePayment(tx, payment.id, { status: 'paid', chargeId: charge.id });
 */
export async function settlePayment(tx: ShopDb, id: string, settlement: Settlement): Promise<Payment | undefined> {
  const [row] = await tx
    .update(payments)
    .set(settlement)
    .where(and(eq(payments.id, id), eq(payments.status, 'pending')))
    .returning();
  return row && toPayment(row);
}

export async function listPayments(db: ShopDb, userId: string): Promise<Payment[]> {
  const rows = await db.select().from(payments).where(eq(payments.userId, userId)).orderBy(desc(payments.createdAt)).limit(100);
  return rows.map(toPayment);
}

export async function getPayment(db: ShopDb, userId: string, id: string): Promise<Payment | undefined> {
  const [row] = await db.select().from(payments).where(and(eq(payments.userId, userId), eq(payments.id, id)));
  return row && toPayment(row);
}
