// What the README's gateway payment example (Payments through a gateway)
// relies on, as an app would have it: a database with a payments table whose
// status moves from pending to paid or declined, an Express app, and a
// Stripe-like gateway client (the demo's fake gateway, examples/gateway,
// answers these requests; its typed client there is the fuller version).
import { and, eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text, uuid } from 'drizzle-orm/pg-core';
import express, { type Request } from 'express';
import type { TransactionOf } from 'drizzle-idempotency';

export const db = drizzle(process.env.DATABASE_URL!);
export type Tx = TransactionOf<typeof db>;
export const app = express().use(express.json());
export const userOf = (req: Request): string => req.get('x-user-id') ?? 'anonymous';

export const payments = pgTable('payments', {
  id: uuid('id').primaryKey().defaultRandom(),
  userId: text('user_id').notNull(),
  amount: integer('amount').notNull(),
  currency: text('currency').notNull(),
  status: text('status').$type<'pending' | 'paid' | 'declined'>().notNull(),
  chargeId: text('charge_id'),
});
export type Payment = typeof payments.$inferSelect;

export async function insertPendingPayment(tx: Tx, p: { userId: string; amount: number; currency: string }): Promise<Payment> {
  const [row] = await tx.insert(payments).values({ ...p, status: 'pending' }).returning();
  return row!;
}

export async function settlePayment(tx: Tx, id: string, status: 'paid' | 'declined', chargeId: string | null): Promise<Payment> {
  const [row] = await tx.update(payments).set({ status, chargeId }).where(and(eq(payments.id, id), eq(payments.status, 'pending'))).returning();
  return row!;
}

/** The gateway's charge: money taken, or a refusal it recorded under the key. */
export interface Charge {
  id: string;
  status: 'succeeded' | 'declined';
  declineCode: string | null;
}

/** A 4xx from the gateway: it charged nothing, and the same request would be refused again. */
export class GatewayDeclinedError extends Error {
  constructor(readonly code: string) {
    super(`the gateway declined: ${code}`);
  }
}

const GATEWAY = process.env.GATEWAY_URL ?? 'http://127.0.0.1:4010';

export const gateway = {
  /** POST /v1/charges under an Idempotency-Key: the gateway charges a key once. */
  async charge(body: { amount: number; currency: string; reference: string }, o: { idempotencyKey: string; signal: AbortSignal }): Promise<Charge> {
    const res = await fetch(`${GATEWAY}/v1/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': o.idempotencyKey },
      body: JSON.stringify(body),
      signal: o.signal,
    });
    const answer = (await res.json()) as Charge & { error?: { code: string } };
    if (res.status >= 400 && res.status < 500 && res.status !== 409 && res.status !== 429) throw new GatewayDeclinedError(answer.error?.code ?? String(res.status));
    if (!res.ok) throw new Error(`the gateway answered ${res.status}`);
    return answer;
  },
  /** GET /v1/charges?idempotency_key=: the key's charge, or undefined (404) when it never charged it. */
  async findCharge(idempotencyKey: string, signal: AbortSignal): Promise<Charge | undefined> {
    const res = await fetch(`${GATEWAY}/v1/charges?idempotency_key=${encodeURIComponent(idempotencyKey)}`, { signal });
    if (res.status === 404) return undefined;
    if (!res.ok) throw new Error(`the gateway answered ${res.status}`);
    return (await res.json()) as Charge;
  },
};
