import { sql } from 'drizzle-orm';
import { keysTable, queryRows, type IdempotencyDatabase } from './db.js';
import { IdempotencyInFlightError, IdempotencySerializationError } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { LOCK_NOT_AVAILABLE, SERIALIZATION_FAILURE, sqlState } from './pg-error.js';

// Where the claim parks the caller's lock_timeout while it waits under its own
// bound. Transaction-local like everything here, so PgBouncer's transaction
// pooling sees no session state.
export const SAVED_LOCK_TIMEOUT = 'drizzle_idempotency.saved_lock_timeout';

/** SQL that puts the caller's lock_timeout back; evaluated in our next statement. */
export const restoreLockTimeout = sql`set_config('lock_timeout', current_setting(${SAVED_LOCK_TIMEOUT}), true)`;

/**
 * Claims `(scope, key)` in one statement: inserts a `started` row, or takes
 * over one that expired (or whose lease ran out). A live row is left alone and
 * the statement returns no row. A concurrent, uncommitted claim makes this
 * INSERT wait on its unique entry; the wait is bounded by setting lock_timeout
 * inside the statement (no extra round trip) and restored by RETURNING, or by
 * `readKey` when nothing is returned.
 *
 * Returns true when this transaction now owns the key.
 */
export async function claimKey(db: IdempotencyDatabase, o: ResolvedOptions): Promise<boolean> {
  const now = sql`statement_timestamp()`;
  try {
    const rows = await queryRows(
      db,
      sql`insert into ${keysTable(o.schema)} as k (scope, key, fingerprint, status, expires_at)
          select ${o.scope}, ${o.key}, ${o.fingerprint}, 'started', ${now} + ${o.ttlMs} * interval '1 millisecond'
          from (select set_config(${SAVED_LOCK_TIMEOUT}, current_setting('lock_timeout'), true),
                       set_config('lock_timeout', ${`${o.lockTimeoutMs}ms`}, true)) as bound
          on conflict (scope, key) do update
            set fingerprint = excluded.fingerprint, status = 'started', response = null,
                created_at = ${now}, completed_at = null, expires_at = excluded.expires_at, locked_until = null
            where k.expires_at <= ${now}
               or (k.status = 'started' and (k.locked_until is null or k.locked_until <= ${now}))
          returning ${restoreLockTimeout}`,
    );
    return rows.length === 1;
  } catch (error) {
    switch (sqlState(error)) {
      case LOCK_NOT_AVAILABLE:
        throw new IdempotencyInFlightError(
          o.onInFlight === 'reject'
            ? `idempotency key ${JSON.stringify(o.key)} is in flight in another transaction`
            : `idempotency key ${JSON.stringify(o.key)} was still in flight after waiting ${o.lockTimeoutMs} ms`,
          { cause: error },
        );
      case SERIALIZATION_FAILURE:
        throw new IdempotencySerializationError(
          `idempotency key ${JSON.stringify(o.key)} was committed by a concurrent transaction; retry the whole transaction to replay it`,
          { cause: error },
        );
      default:
        throw error;
    }
  }
}
