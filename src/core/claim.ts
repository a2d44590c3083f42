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

// The completed row this transaction's last claim (or reclaim) statement saw
// as it started (its completed_at, as epoch text; empty: none), so that
// `readKey` can tell a key that completed while that claim waited on its row
// lock from one that was complete already (telemetry's "waited"). Not the
// claim's start time: a first call stores before its COMMIT, so a duplicate
// can wait for a row whose completed_at precedes its claim; and a timestamp
// read back from text depends on DateStyle and TimeZone (ChST does not parse).
// Only under READ COMMITTED: under REPEATABLE READ and SERIALIZABLE, `readKey`
// sees the claim's snapshot (a claim that waited fails to serialize instead),
// and a read here would take SERIALIZABLE predicate locks that make claims of
// other keys on the same index page fail to serialize. Transaction-local.
export const CLAIM_SAW = 'drizzle_idempotency.claim_saw';

/** A row's completed_at as text that no session setting changes, to compare for equality. */
export const completedAtText = (k: SQL) => sql`extract(epoch from ${k}.completed_at)::text`;

/** What CLAIM_SAW holds under REPEATABLE READ and SERIALIZABLE: no read was made, nothing can have changed since. */
export const SNAPSHOT_SAW = sql.raw(`'snapshot'`);

/** Whether this transaction reads each statement's own snapshot (READ COMMITTED; READ UNCOMMITTED is the same in Postgres). */
const perStatementSnapshot = sql`current_setting('transaction_isolation') in ('read committed', 'read uncommitted')`;

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
 * completed (or failed) key past its expiry, or a started row with a lease
 * that ran out and no owner token. A `started` row without a lease is never
 * taken over: the only such row a transaction can see is a claim of its own
 * that is still running `fn`. Nor is a leased workflow's row (it has an owner
 * token): its steps and recorded results are resumed only by a fenced
 * takeover (src/leased), never overwritten by a claim.
 */
export const reclaimable = (k: SQL) =>
  sql`((${k}.status <> 'started' and ${k}.expires_at <= ${now}) or (${k}.status = 'started' and ${k}.locked_until <= ${now} and ${k}.owner_token is null))`;

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
  // What it saw matters only to telemetry: a call nobody watches reads nothing for it.
  const saw = o.trace
    ? sql`case when ${perStatementSnapshot}
                       then coalesce((select ${completedAtText(sql`s`)} from ${keysTable(o.schema)} as s
                         where s.scope = ${v('scope')} and s.key = ${v('key')} and s.status = 'completed'), '')
                       else ${SNAPSHOT_SAW} end`
    : SNAPSHOT_SAW;
  return sql`(select set_config(${SAVED_LOCK_TIMEOUT}, coalesce(${parked}, current_setting('lock_timeout')), true),
                     set_config('lock_timeout', ${bound}, true),
                     set_config(${CLAIM_SAW}, ${saw}, true)) as bound`;
};

/** A claim's shape: also whether the call is watched (what it saw is noted only then). */
const claimShape = (statement: string, o: ResolvedOptions) => `${shapeOf(statement, o)}${o.trace ? ':watched' : ''}`;

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
        shape: claimShape('claim', o),
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
        shape: claimShape('reclaim', o),
        values: waitValues(o),
        build: (v) => sql`update ${k} set fingerprint = ${v('fingerprint')}, status = 'started', response = null, created_at = ${now},
            completed_at = null, expires_at = ${now} + ${v('ttlMs')} * interval '1 millisecond', locked_until = null,
            workflow = null, input = null, steps = null, recovery_point = null, attempts = 0
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

/**
 * Deletes the row of a claim that committed on its own, outside the
 * transaction it was meant to open (see FusedQueryLost): `started`, no result,
 * no lease. No other call takes over or completes such a row, so it is this
 * claim's; left, it would hold the key until its TTL.
 */
export async function releaseLoneClaim(db: SqlRunner, o: ResolvedOptions): Promise<void> {
  const k = keysTable(o.schema);
  await runStatement(
    db,
    {
      shape: shapeOf('release-lone-claim', o),
      values: keyValues(o),
      build: (v) => sql`delete from ${k} where scope = ${v('scope')} and key = ${v('key')} and status = 'started' and response is null and owner_token is null`,
    },
    'never',
  );
}
