import { sql, type SQL } from 'drizzle-orm';
import type { SqlRunner } from '../driver/database.js';
import { PreparedStatementsRefused, runStatement } from '../driver/statement.js';
import { keysTable } from '../schema/keys-table.js';
import { IdempotencyInFlightError, IdempotencyKeyReusedError, IdempotencyWorkflowFailedError } from '../shared/errors.js';
import type { ResolvedOptions } from './options.js';
import { deserializeResult } from './result.js';
import { CLAIM_SAW, completedAtText, keyValues, SNAPSHOT_SAW, reclaimable, restoreLockTimeout, shapeOf } from './claim.js';
import { traceAnswered } from '../telemetry/publish.js';
import { explainFailure, statementFailure } from './failure.js';

/** A call's result and whether it came from the store rather than from `fn`. */
export interface IdempotentOutcome<T> {
  value: T;
  /** True when `fn` did not run: this is the first execution's stored result. */
  replayed: boolean;
  /** With `withExpiry: true`: when the key expires (database clock), a TTL after the first execution completed. */
  expiresAt?: Date;
}

// Epoch milliseconds as a float8, which node-postgres reads as a number
// whatever type parsers drizzle or the pool set for timestamps. Selected only
// with `withExpiry`: otherwise the statements stay as lean as before.
const EXPIRES_MS = sql.raw(`, (extract(epoch from expires_at) * 1000)::float8 as expires_ms`);
const NO_COLUMN = sql.raw('');

/** The expiry column for a statement of `o`, when asked for, and the statement's shape with it. */
export function expiry(statement: string, o: ResolvedOptions): { column: SQL; shape: string } {
  return o.withExpiry ? { column: EXPIRES_MS, shape: shapeOf(`${statement}+expiry`, o) } : { column: NO_COLUMN, shape: shapeOf(statement, o) };
}

/** A key row as `readKey` sees it; `status` is null when there is no row. */
export interface KeyRow {
  status: string | null;
  fingerprint: string | null;
  /** jsonb's text: every statement selects `response::text`, so that no driver's JSON handling
   * (postgres.js' column transforms rename the keys inside jsonb values too) changes the result. */
  response: unknown;
  reclaimable: boolean | null;
  /** The row completed after this transaction's claim saw it: the claim waited for it. */
  waited?: boolean | null;
  /** With `withExpiry` only. */
  expires_ms?: number | null;
}

/**
 * Reads the key a claim did not get. Also restores the caller's lock_timeout,
 * which the claim's RETURNING could not (it returned no row), so it always
 * returns one row, empty when the key is gone.
 */
export async function readKey(db: SqlRunner, o: ResolvedOptions): Promise<KeyRow> {
  const { column, shape } = expiry('read', o);
  const rows = await runStatement<KeyRow>(
    db,
    {
      shape,
      values: keyValues(o),
      build: (v) => sql`select k.status, k.fingerprint, k.response::text as response, ${reclaimable(sql`k`)} as reclaimable${column},
          k.status = 'completed' and current_setting(${CLAIM_SAW}, true) <> ${SNAPSHOT_SAW}
            and ${completedAtText(sql`k`)} is distinct from current_setting(${CLAIM_SAW}, true) as waited, ${restoreLockTimeout}
        from (select 1) as one
        left join ${keysTable(o.schema)} as k on k.scope = ${v('scope')} and k.key = ${v('key')}`,
    },
    o.prepare,
  ).catch((error: unknown) => {
    throw statementFailure(error, o, false);
  });
  return rows[0]!;
}

/**
 * One SELECT, outside any transaction: the stored result of a completed, live
 * key, or undefined when the caller has to claim it.
 */
export async function lookupStored<T>(db: SqlRunner, o: ResolvedOptions, again = true): Promise<IdempotentOutcome<T> | undefined> {
  let row: KeyRow | undefined;
  const { column, shape } = expiry('lookup', o);
  try {
    [row] = await runStatement<KeyRow>(
      db,
      {
        shape,
        values: keyValues(o),
        build: (v) => sql`select status, fingerprint, response::text as response, false as reclaimable${column} from ${keysTable(o.schema)}
          where scope = ${v('scope')} and key = ${v('key')} and status = 'completed' and expires_at > statement_timestamp()`,
      },
      o.prepare,
    );
  } catch (error) {
    // The pool now uses unnamed statements: look again, once.
    if (error instanceof PreparedStatementsRefused && again) return lookupStored<T>(db, o, false);
    throw explainFailure(statementFailure(error, o, false), { phase: 'claim' }, 'own');
  }
  return row ? replayOf<T>(row, o) : undefined;
}

/** The stored result of a live row, or the error a duplicate gets. */
export function replayOf<T>(row: KeyRow, o: ResolvedOptions): IdempotentOutcome<T> {
  traceAnswered(o.trace);
  if (row.fingerprint !== o.fingerprint) {
    throw new IdempotencyKeyReusedError(`idempotency key ${JSON.stringify(o.key)} was already used for a different request`);
  }
  if (row.status === 'failed') {
    throw new IdempotencyWorkflowFailedError(`idempotency key ${JSON.stringify(o.key)} belongs to leased work that failed on its last attempt and was recorded as failed`);
  }
  if (row.status !== 'completed') {
    // Leased work, or an unfinished claim that committed (a call not awaited):
    // the latter stays until the sweep removes it after its TTL.
    throw new IdempotencyInFlightError(
      `idempotency key ${JSON.stringify(o.key)} is started and not completed: work in progress, or an unfinished claim that committed (removed by the sweep once its TTL has passed)`,
    );
  }
  return outcomeOf(deserializeResult<T>(row.response), true, row.expires_ms, o);
}

/** An outcome, with the expiry only when it was asked for: the others keep their plain shape. */
export function outcomeOf<T>(value: T, replayed: boolean, expiresMs: number | null | undefined, o: ResolvedOptions): IdempotentOutcome<T> {
  return o.withExpiry ? { value, replayed, expiresAt: new Date(expiresMs!) } : { value, replayed };
}
