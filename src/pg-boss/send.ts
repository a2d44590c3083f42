import type { IdempotencyDatabase } from '../driver/database.js';
import { executeSqlOn, type ExecuteSql } from './execute-sql.js';

/** The part of a pg-boss instance `sendInTransaction` uses (`PgBoss` has it). */
export interface JobSender<O> {
  send(name: string, data: object | null, options: O & { db: ExecuteSql }): Promise<string | null>;
}

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
export function sendInTransaction<O extends object = object>(
  boss: JobSender<O>,
  tx: IdempotencyDatabase,
  name: string,
  data: object | null,
  options?: O,
): Promise<string | null> {
  return boss.send(name, data, { ...(options as O), db: executeSqlOn(tx) });
}
