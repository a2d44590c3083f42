import { sql, type SQL } from 'drizzle-orm';
import type { SqlRunner } from '../driver/database.js';
import { runStatement } from '../driver/statement.js';
import { keysTable } from '../schema/keys-table.js';
import { statementFailure } from './failure.js';
import type { ResolvedOptions } from './options.js';

// Where a claim parks the caller's lock_timeout while it waits under its own
// bound. Transaction-local like everything here, so PgBouncer's transaction
// pooling sees no session state. Empty means nothing is parked.
export const SAVED_LOCK_TIMEOUT = 'drizzle_idempotency.saved_lock_timeout';

const parked = sql`nullif(current_setting(${SAVED_LOCK_TIMEOUT}, true), '')`;

// When this transaction's last claim (or reclaim) statement started, so that
// `readKey` can tell a duplicate that completed while that claim waited on it
// from one that was complete already (telemetry's "waited"). Transaction-local.
export const CLAIM_STARTED = 'drizzle_idempotency.claim_started';

/**
 * SQL that puts the caller's lock_timeout back and empties the parking place;
 * evaluated in our next statement. A no-op when nothing is parked, so every
 * path may run it.
 */
export const restoreLockTimeout = sql`set_config('lock_timeout', coalesce(${parked}, current_setting('lock_timeout')), true),
  set_config(${SAVED_LOCK_TIMEOUT}, '', true)`;

const now = sql`statement_timestamp()`;

/**
 * A row that no longer protects anything, so a claim may take it over: a
 * completed key past its expiry, or leased work whose lease ran out. A
 * `started` row without a lease is never taken over: the only such row a
 * transaction can see is a claim of its own that is still running `fn`.
 */
export const reclaimable = (k: SQL) =>
  sql`((${k}.status = 'completed' and ${k}.expires_at <= ${now}) or (${k}.status = 'started' and ${k}.locked_until <= ${now}))`;

/** The values every statement about one key uses. */
export const keyValues = (o: ResolvedOptions) => ({ scope: o.scope, key: o.key, fingerprint: o.fingerprint, ttlMs: o.ttlMs });

/** What changes a statement's text besides its kind: the schema of the table, and the policy. */
export const shapeOf = (statement: string, o: ResolvedOptions) => `${statement}:${o.onInFlight}:${o.schema ?? ''}`;

/**
 * The wait bound a claim sets as it starts, before it can wait, parking the
 * caller's own (unless an earlier statement of this claim parked it already).
 *
 * Under 'reject', a live key in flight must fail at once (1 ms, the shortest
 * lock_timeout); but a dead row's lock is held by a sweep deleting it or a
 * reclaim retaking it, which ends in milliseconds: that wait is allowed
 * `deadKeyWaitMs`, and the claim then takes the key or replays it.
 */
const boundedWait = (o: ResolvedOptions, v: (name: string) => unknown) => {
  const bound =
    o.onInFlight === 'wait'
      ? sql`${v('bound')}`
      : sql`case when exists (select 1 from ${keysTable(o.schema)} as d where d.scope = ${v('scope')} and d.key = ${v('key')} and ${reclaimable(sql`d`)})
               then ${v('deadBound')} else '1ms' end`;
  return sql`(select set_config(${SAVED_LOCK_TIMEOUT}, coalesce(${parked}, current_setting('lock_timeout')), true),
                     set_config('lock_timeout', ${bound}, true),
                     set_config(${CLAIM_STARTED}, statement_timestamp()::text, true)) as bound`;
};

const waitValues = (o: ResolvedOptions) => ({ ...keyValues(o), bound: `${o.lockTimeoutMs}ms`, deadBound: `${o.deadKeyWaitMs}ms` });

/**
 * Claims a new `(scope, key)`: inserts a `started` row. ON CONFLICT DO NOTHING
 * takes no lock on a committed row, so concurrent replays never queue behind
 * each other; it does wait on an uncommitted claim (the key is in flight),
 * bounded by the lock_timeout this statement sets for itself and restores in
 * RETURNING (or `readKey` restores, when nothing is returned).
 *
 * The row expires a TTL after the claim only so that a sweep can remove it
 * should it ever be committed unfinished; the store moves expiry to a TTL
 * after completion.
 *
 * Returns true when this transaction now owns the key.
 */
export async function claimKey(db: SqlRunner, o: ResolvedOptions): Promise<boolean> {
  const rows = await bounded(o, () =>
    runStatement(
      db,
      {
        shape: shapeOf('claim', o),
        values: waitValues(o),
        build: (v) => sql`insert into ${keysTable(o.schema)} (scope, key, fingerprint, status, expires_at)
          select ${v('scope')}, ${v('key')}, ${v('fingerprint')}, 'started', ${now} + ${v('ttlMs')} * interval '1 millisecond'
          from ${boundedWait(o, v)}
          on conflict (scope, key) do nothing
          returning ${restoreLockTimeout}`,
      },
      o.prepare,
    ),
  );
  return rows.length === 1;
}

/**
 * Takes over a row `readKey` found reclaimable, as if it were new. The WHERE is
 * checked again on the locked row, so of two reclaimers only one wins; the
 * other sees the winner's row on its next read (which also restores the
 * lock_timeout this statement parked, when it matched nothing).
 */
export async function reclaimKey(db: SqlRunner, o: ResolvedOptions): Promise<boolean> {
  const k = keysTable(o.schema);
  const rows = await bounded(o, () =>
    runStatement(
      db,
      {
        shape: shapeOf('reclaim', o),
        values: waitValues(o),
        build: (v) => sql`update ${k} set fingerprint = ${v('fingerprint')}, status = 'started', response = null, created_at = ${now},
            completed_at = null, expires_at = ${now} + ${v('ttlMs')} * interval '1 millisecond', locked_until = null
          from ${boundedWait(o, v)}
          where ${k}.scope = ${v('scope')} and ${k}.key = ${v('key')} and ${reclaimable(k)}
          returning ${restoreLockTimeout}`,
      },
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
    throw statementFailure(error, o, true);
  }
}
