// Declarations the README's `prepare` and pipeline mode example assumes: the
// request's values and the business write (a charge, in ./schema.ts's table).
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { charges } from './schema.js';

/** From the request: its Idempotency-Key header, the authenticated customer, the order. */
export const key = 'order-42-payment';
export const customerId = 'alice';
export const order = { id: 42, amount: 1999 };

export async function chargeCard(tx: Pick<NodePgDatabase, 'insert'>, o: { amount: number }) {
  const [charge] = await tx.insert(charges).values({ customerId, amount: o.amount }).returning();
  return charge!;
}
