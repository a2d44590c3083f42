import { sql } from 'drizzle-orm';
import type { IdempotencyDatabase } from './database.js';

let savepoints = 0;

/**
 * Runs `body` in a savepoint of `tx` whose name is the library's alone: if
 * `body` throws, everything since the savepoint rolls back, then the error
 * goes on. drizzle's own `tx.transaction()` names savepoints by nesting depth
 * (`sp1`, `sp2`, …), so a savepoint that code inside `fn` opens on the same
 * transaction object would share the name, and a rollback to it would roll
 * back too little; a name of our own cannot collide.
 *
 * @example
 * await inSavepoint(tx, () => claimRunStore(tx));
 */
export async function inSavepoint<R>(tx: IdempotencyDatabase, body: () => Promise<R>): Promise<R> {
  const name = sql.identifier(`drizzle_idempotency_${++savepoints}`);
  await tx.execute(sql`savepoint ${name}`);
  let result: R;
  try {
    result = await body();
  } catch (error) {
    // Savepoints opened after ours (fn's own, left behind by drizzle) go with it.
    // If the rollback itself fails, the connection is gone: the original error says why.
    await tx.execute(sql`rollback to savepoint ${name}`).then(
      () => tx.execute(sql`release savepoint ${name}`),
      () => undefined,
    );
    throw error;
  }
  await tx.execute(sql`release savepoint ${name}`);
  return result;
}
