import { sql } from 'drizzle-orm';
import { keysTable, queryRows, type IdempotencyDatabase } from './db.js';
import { IdempotencyInFlightError, IdempotencyKeyReusedError } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { deserializeResult } from './result.js';
import { restoreLockTimeout } from './claim.js';

/** A call's result and whether it came from the store rather than from `fn`. */
export interface IdempotentOutcome<T> {
  value: T;
  /** True when `fn` did not run: this is the first execution's stored result. */
  replayed: boolean;
}

interface KeyRow {
  status: string | null;
  fingerprint: string | null;
  response: unknown;
}

/** Reads a key the claim found live. Also restores the caller's lock_timeout,
 * which the claim's RETURNING could not (it returned no row). */
export async function readClaimedByOther<T>(db: IdempotencyDatabase, o: ResolvedOptions): Promise<IdempotentOutcome<T>> {
  const [row] = await queryRows<KeyRow>(
    db,
    sql`select k.status, k.fingerprint, k.response, ${restoreLockTimeout}
        from (select 1) as one
        left join ${keysTable(o.schema)} as k on k.scope = ${o.scope} and k.key = ${o.key}`,
  );
  return replayOf<T>(row, o);
}

/**
 * One SELECT, outside any transaction: the stored result of a completed, live
 * key, or undefined when the caller has to claim it.
 *
 * @example
 * const hit = await lookupReplay(db, key, { scope: userId })
 * if (hit) return hit.value
 */
export async function lookupStored<T>(db: IdempotencyDatabase, o: ResolvedOptions): Promise<IdempotentOutcome<T> | undefined> {
  const [row] = await queryRows<KeyRow>(
    db,
    sql`select status, fingerprint, response from ${keysTable(o.schema)}
        where scope = ${o.scope} and key = ${o.key} and status = 'completed' and expires_at > statement_timestamp()`,
  );
  return row ? replayOf<T>(row, o) : undefined;
}

function replayOf<T>(row: KeyRow | undefined, o: ResolvedOptions): IdempotentOutcome<T> {
  // The claim held the row locked, so it cannot have vanished; a missing row
  // would mean the table was tampered with mid-transaction.
  if (!row || row.status === null) throw new Error(`idempotency key ${JSON.stringify(o.key)} vanished after its claim`);
  if (row.fingerprint !== o.fingerprint) {
    throw new IdempotencyKeyReusedError(
      `idempotency key ${JSON.stringify(o.key)} was already used for a different request`,
    );
  }
  if (row.status !== 'completed') {
    throw new IdempotencyInFlightError(`idempotency key ${JSON.stringify(o.key)} is held by work in progress (lease)`);
  }
  return { value: deserializeResult<T>(row.response), replayed: true };
}
