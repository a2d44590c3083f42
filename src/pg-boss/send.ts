import type { IdempotencyDatabase } from '../driver/database.js';
import { executeSqlOn, type ExecuteSql } from './execute-sql.js';

/** The part of a pg-boss instance `sendInTransaction` uses (`PgBoss` has it). */
export interface JobSender {
  send(name: string, data: object, options: { db: ExecuteSql }): Promise<string | null>;
}

/** The options `boss.send()` takes besides `db` (pg-boss's `SendOptions`, for a `PgBoss`). */
export type SendOptionsOf<B> = B extends { send(name: string, data: object, options: infer O): Promise<string | null> } ? Omit<O, 'db'> : never;

/**
 * Enqueues a pg-boss job inside `tx`: the job exists if and only if `tx`
 * commits, with the business write and the idempotency key. Returns the job id
 * (null when pg-boss's singleton or throttling options dropped the job).
 *
 * @example
 * await withIdempotency(db, key, async (tx) => {
 *   const [order] = await tx.insert(orders).values(cart).returning();
 *   await sendInTransaction(boss, tx, 'order-confirmation', { orderId: order!.id });
 *   return order;
 * });
 */
export function sendInTransaction<B extends JobSender>(
  boss: B,
  tx: IdempotencyDatabase,
  name: string,
  data: object,
  options?: SendOptionsOf<B>,
): Promise<string | null> {
  return boss.send(name, data, { ...options, db: executeSqlOn(tx) });
}
