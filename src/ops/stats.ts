import { sql } from 'drizzle-orm';
import { queryRows, type IdempotencyDatabase } from '../driver/database.js';
import { listenForIdleErrors } from '../driver/pool-transaction.js';
import { assertValidSchemaName, keysTable, keysTableOid } from '../schema/keys-table.js';
import { refuseInsideTransactionOn } from '../core/turns.js';

/** The live key created longest ago. */
export interface OldestLiveKey {
  scope: string;
  key: string;
  createdAt: Date;
  expiresAt: Date;
}

/** The leased key that has waited longest to be resumed. */
export interface OldestWaitingKey {
  scope: string;
  key: string;
  /** The workflow that resumes it: the completer must be given it. */
  workflow: string | null;
  /** The last step that committed; `null` before the first. */
  recoveryPoint: string | null;
  /** Claims, takeovers and resumes so far. */
  attempts: number;
  /** When it was first claimed: how long its client has been waiting is `now - createdAt`. */
  createdAt: Date;
  /** When its last lease ran out or was released (the last run's end, or its holder's death). */
  leaseEndedAt: Date | null;
}

/** A snapshot of the keys table, by the database clock. */
export interface IdempotencyStats {
  /** Keys that have not expired: they replay. */
  live: number;
  /** Keys past `expires_at`: they behave as absent and wait for a sweep. */
  expired: number;
  /**
   * Rows still `started`, expired or not: leased work (`leasedHeld` +
   * `leasedWaiting`) and the committed unfinished claims of in-transaction
   * calls (the rest).
   */
  inProgress: number;
  /** Leased work whose lease is held: `started`, an owner token, `locked_until` ahead. A process is running it (or is paused). */
  leasedHeld: number;
  /**
   * Leased work waiting to be resumed: `started`, an owner token, its lease
   * run out or released (a holder that died, a run that ended in an error or
   * an unknown outcome). The completer's backlog (of every workflow; the
   * completer takes only those it is given); a retry of the key resumes it too.
   */
  leasedWaiting: number;
  /** Of `leasedWaiting`, the key claimed longest ago; `null` when none waits. */
  oldestWaiting: OldestWaitingKey | null;
  /** Leased work recorded `failed` that has not expired: every call gets 500 IDEMPOTENCY_WORKFLOW_FAILED (expired ones count under `expired`). */
  failed: number;
  /** `null` when no key is live. */
  oldestLive: OldestLiveKey | null;
  /** Heap, TOAST (large responses) and maps of the table, in bytes. */
  tableBytes: number;
  /** All its indexes, in bytes. */
  indexBytes: number;
  /** The database clock the counts were taken at. */
  now: Date;
}

interface StatsRow {
  live: number | string;
  expired: number | string;
  in_progress: number | string;
  leased_held: number | string;
  leased_waiting: number | string;
  failed: number | string;
  waiting_scope: string | null;
  waiting_key: string | null;
  waiting_workflow: string | null;
  waiting_recovery_point: string | null;
  waiting_attempts: number | string | null;
  waiting_created_at: Date | string | null;
  waiting_lease_ended_at: Date | string | null;
  oldest_scope: string | null;
  oldest_key: string | null;
  oldest_created_at: Date | string | null;
  oldest_expires_at: Date | string | null;
  table_bytes: number | string | null;
  index_bytes: number | string | null;
  now: Date | string;
}

// Drivers differ: node-postgres hands timestamptz over as Date, others as text.
const toDate = (value: Date | string) => (value instanceof Date ? value : new Date(value));

/**
 * Counts live, expired and in-progress keys (leased work held, leased work
 * waiting to be resumed, failed), finds the oldest live key and the leased
 * key waiting longest, and
 * measures the table and its indexes, in one statement. It reads the whole
 * table: an operator's tool (the CLI's `stats`), not something for every request.
 *
 * @example
 * const { live, expired, leasedWaiting, oldestWaiting } = await idempotencyStats(db);
 */
export async function idempotencyStats(db: IdempotencyDatabase, options: { schema?: string } = {}): Promise<IdempotencyStats> {
  const { schema } = options;
  if (schema !== undefined) assertValidSchemaName(schema);
  refuseInsideTransactionOn(db, 'idempotencyStats');
  listenForIdleErrors(db);
  const table = keysTable(schema);
  // Leased work is a started row with an owner token (an in-transaction call's claim has none).
  const leased = sql`(status = 'started' and owner_token is not null)`;
  const leaseHeld = sql`coalesce(locked_until > statement_timestamp(), false)`;
  const [row] = await queryRows<StatsRow>(
    db,
    sql`with counts as (
          select count(*) filter (where expires_at > statement_timestamp())::bigint as live,
                 count(*) filter (where expires_at <= statement_timestamp())::bigint as expired,
                 count(*) filter (where status = 'started')::bigint as in_progress,
                 count(*) filter (where ${leased} and ${leaseHeld})::bigint as leased_held,
                 count(*) filter (where ${leased} and not ${leaseHeld})::bigint as leased_waiting,
                 count(*) filter (where status = 'failed' and expires_at > statement_timestamp())::bigint as failed
          from ${table}),
        waiting as (
          select scope, key, workflow, recovery_point, attempts, created_at, locked_until from ${table}
          where ${leased} and not ${leaseHeld}
          order by created_at, scope, key
          limit 1),
        oldest as (
          select scope, key, created_at, expires_at from ${table}
          where expires_at > statement_timestamp()
          order by created_at, scope, key
          limit 1),
        rel as (select ${keysTableOid(schema)} as oid)
        select counts.live, counts.expired, counts.in_progress, counts.leased_held, counts.leased_waiting, counts.failed,
               waiting.scope as waiting_scope, waiting.key as waiting_key, waiting.workflow as waiting_workflow,
               waiting.recovery_point as waiting_recovery_point, waiting.attempts as waiting_attempts,
               waiting.created_at as waiting_created_at, waiting.locked_until as waiting_lease_ended_at,
               oldest.scope as oldest_scope, oldest.key as oldest_key,
               oldest.created_at as oldest_created_at, oldest.expires_at as oldest_expires_at,
               pg_table_size(rel.oid) as table_bytes, pg_indexes_size(rel.oid) as index_bytes,
               statement_timestamp() as now
        from counts cross join rel left join oldest on true left join waiting on true`,
  );
  if (!row) throw new Error('the stats query returned no row');
  return {
    live: Number(row.live),
    expired: Number(row.expired),
    inProgress: Number(row.in_progress),
    leasedHeld: Number(row.leased_held),
    leasedWaiting: Number(row.leased_waiting),
    oldestWaiting:
      row.waiting_key === null || row.waiting_created_at === null
        ? null
        : {
            scope: row.waiting_scope ?? '',
            key: row.waiting_key,
            workflow: row.waiting_workflow,
            recoveryPoint: row.waiting_recovery_point,
            attempts: Number(row.waiting_attempts ?? 0),
            createdAt: toDate(row.waiting_created_at),
            leaseEndedAt: row.waiting_lease_ended_at === null ? null : toDate(row.waiting_lease_ended_at),
          },
    failed: Number(row.failed),
    oldestLive:
      row.oldest_key === null || row.oldest_created_at === null || row.oldest_expires_at === null
        ? null
        : {
            scope: row.oldest_scope ?? '',
            key: row.oldest_key,
            createdAt: toDate(row.oldest_created_at),
            expiresAt: toDate(row.oldest_expires_at),
          },
    tableBytes: Number(row.table_bytes ?? 0),
    indexBytes: Number(row.index_bytes ?? 0),
    now: toDate(row.now),
  };
}
