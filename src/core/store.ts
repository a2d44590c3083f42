import { sql } from 'drizzle-orm';
import type { SqlRunner } from '../driver/database.js';
import { runStatement } from '../driver/statement.js';
import { DIVISION_BY_ZERO, sqlState } from '../driver/pg-error.js';
import { keysTable } from '../schema/keys-table.js';
import { IdempotencyClaimLostError } from '../shared/errors.js';
import { statementFailure } from './failure.js';
import { keyValues } from './claim.js';
import type { ResolvedOptions } from './options.js';
import { deserializeResult } from './result.js';
import { expiry, outcomeOf, type IdempotentOutcome } from './stored-key.js';

/**
 * Marks the claimed key completed with its result, in the caller's transaction,
 * and starts its lifetime: it expires a TTL after completion. Only the row this
 * call claimed is completed (still `started`, same fingerprint); anything else
 * fails with `IDEMPOTENCY_CLAIM_LOST`, so that nothing of `fn` commits.
 * Returns the result as jsonb gives it back (with the key's expiry), so the first answer is exactly
 * what every replay will be (jsonb normalises key order).
 *
 * `failInSql`: when COMMIT is already on its way behind this statement, a
 * missing row must fail the statement itself (so that COMMIT rolls back), not
 * just the check on the answer, which comes after COMMIT.
 */
export async function storeResult<T>(db: SqlRunner, o: ResolvedOptions, json: string, failInSql = false): Promise<IdempotentOutcome<T>> {
  const { column, shape } = expiry(failInSql ? 'store-or-fail' : 'store', o);
  // `json` is JSON text already: the parameter is text, cast to jsonb by the
  // server. Typed jsonb, a driver that JSON-encodes such values (postgres.js
  // under drizzle-orm 1.0, which no longer turns that off) would store a JSON string.
  const update = (v: (name: string) => unknown) => sql`update ${keysTable(o.schema)}
        set status = 'completed', response = ${v('json')}::text::jsonb, completed_at = statement_timestamp(),
            expires_at = statement_timestamp() + ${v('ttlMs')} * interval '1 millisecond'
        where scope = ${v('scope')} and key = ${v('key')} and status = 'started' and fingerprint is not distinct from ${v('fingerprint')}
        returning response::text as response${column}`;
  let rows: { response: unknown; expires_ms?: number | null }[];
  try {
    rows = await runStatement(
      db,
      {
        shape,
        values: { ...keyValues(o), json },
        // No row: 1/0 raises division_by_zero, the one error plain SQL can raise on demand.
        build: (v) =>
          failInSql
            ? sql`with stored as (${update(v)}) select (select response from stored) as response${o.withExpiry ? sql`, (select expires_ms from stored) as expires_ms` : sql``}, 1 / (select count(*)::int from stored) as one`
            : update(v),
      },
      o.prepare,
    );
  } catch (error) {
    if (failInSql && sqlState(error) === DIVISION_BY_ZERO) rows = [];
    else throw statementFailure(error, o, false);
  }
  if (!rows[0]) {
    throw new IdempotencyClaimLostError(
      `idempotency key ${JSON.stringify(o.key)}: the row this call claimed was deleted or changed before its result was stored; nothing was kept`,
    );
  }
  return outcomeOf(deserializeResult<T>(rows[0].response), false, rows[0].expires_ms, o);
}
