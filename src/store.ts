import { sql } from 'drizzle-orm';
import { keysTable, queryRows, type IdempotencyDatabase } from './db.js';
import type { ResolvedOptions } from './options.js';
import { deserializeResult } from './result.js';

/**
 * Marks the claimed key completed with its result, in the caller's transaction.
 * Returns the result as jsonb gives it back, so the first answer is exactly
 * what every replay will be (jsonb normalises key order).
 */
export async function storeResult<T>(db: IdempotencyDatabase, o: ResolvedOptions, json: string): Promise<T> {
  const [row] = await queryRows<{ response: unknown }>(
    db,
    sql`update ${keysTable(o.schema)}
        set status = 'completed', response = ${json}::jsonb, completed_at = statement_timestamp()
        where scope = ${o.scope} and key = ${o.key}
        returning response`,
  );
  if (!row) throw new Error(`idempotency key ${JSON.stringify(o.key)} vanished before its result was stored`);
  return deserializeResult<T>(row.response);
}
