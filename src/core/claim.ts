import { sql, type SQL } from 'drizzle-orm';
import { queryRows, type SqlRunner } from '../driver/database.js';
import { keysTable } from '../schema/keys-table.js';
import { IdempotencyInFlightError, IdempotencySerializationError } from '../shared/errors.js';
import type { ResolvedOptions } from './options.js';
import { LOCK_NOT_AVAILABLE, SERIALIZATION_FAILURE, sqlState } from '../driver/pg-error.js';

// Where a claim parks the caller's lock_timeout while it waits under its own
// bound. Transaction-local like everything here, so PgBouncer's transaction
// pooling sees no session state.
export const SAVED_LOCK_TIMEOUT = 'drizzle_idempotency.saved_lock_timeout';

/** SQL that puts the caller's lock_timeout back; evaluated in our next statement. */
export const restoreLockTimeout = sql`set_config('lock_timeout', current_setting(${SAVED_LOCK_TIMEOUT}), true)`;

/** A row source that sets our wait bound as the statement starts, before it can wait. */
const boundedWait = (o: ResolvedOptions) =>
  sql`(select set_config(${SAVED_LOCK_TIMEOUT}, current_setting('lock_timeout'), true),
              set_config('lock_timeout', ${`${o.lockTimeoutMs}ms`}, true)) as bound`;

const now = sql`statement_timestamp()`;

/** A row that no longer protects anything: expired, or a lease that ran out. */
export const reclaimable = (k: SQL) =>
  sql`(${k}.expires_at <= ${now} or (${k}.status = 'started' and (${k}.locked_until is null or ${k}.locked_until <= ${now})))`;

/**
 * Claims a new `(scope, key)`: inserts a `started` row. ON CONFLICT DO NOTHING
 * takes no lock on a committed row, so concurrent replays never queue behind
 * each other; it does wait on an uncommitted claim (the key is in flight),
 * bounded by the lock_timeout this statement sets for itself and restores in
 * RETURNING (or `readKey` restores, when nothing is returned).
 *
 * Returns true when this transaction now owns the key.
 */
export async function claimKey(db: SqlRunner, o: ResolvedOptions): Promise<boolean> {
  const rows = await bounded(o, () =>
    queryRows(
      db,
      sql`insert into ${keysTable(o.schema)} (scope, key, fingerprint, status, expires_at)
          select ${o.scope}, ${o.key}, ${o.fingerprint}, 'started', ${now} + ${o.ttlMs} * interval '1 millisecond'
          from ${boundedWait(o)}
          on conflict (scope, key) do nothing
          returning ${restoreLockTimeout}`,
      o.prepare,
    ),
  );
  return rows.length === 1;
}

/**
 * Takes over a row `readKey` found reclaimable, as if it were new. The WHERE is
 * checked again on the locked row, so of two reclaimers only one wins; the
 * other sees the winner's row on its next read.
 */
export async function reclaimKey(db: SqlRunner, o: ResolvedOptions): Promise<boolean> {
  const k = keysTable(o.schema);
  const rows = await bounded(o, () =>
    queryRows(
      db,
      sql`update ${k} set fingerprint = ${o.fingerprint}, status = 'started', response = null, created_at = ${now},
            completed_at = null, expires_at = ${now} + ${o.ttlMs} * interval '1 millisecond', locked_until = null
          from ${boundedWait(o)}
          where ${k}.scope = ${o.scope} and ${k}.key = ${o.key} and ${reclaimable(k)}
          returning ${restoreLockTimeout}`,
      o.prepare,
    ),
  );
  return rows.length === 1;
}

/** Runs a statement that may wait on the key, turning Postgres' answers into ours. */
async function bounded<T>(o: ResolvedOptions, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
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
