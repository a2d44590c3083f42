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

/** A snapshot of the keys table, by the database clock. */
export interface IdempotencyStats {
  /** Keys that have not expired: they replay. */
  live: number;
  /** Keys past `expires_at`: they behave as absent and wait for a sweep. */
  expired: number;
  /** Rows still `started`: multi-step work under a lease, or a lease that ran out and awaits a new claim. */
  inProgress: number;
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
 * Counts live, expired and in-progress keys, finds the oldest live one and
 * measures the table and its indexes, in one statement. It reads the whole
 * table: an operator's tool (the CLI's `stats`), not something for every request.
 *
 * @example
 * const { live, expired, tableBytes } = await idempotencyStats(db);
 */
export async function idempotencyStats(db: IdempotencyDatabase, options: { schema?: string } = {}): Promise<IdempotencyStats> {
  const { schema } = options;
  if (schema !== undefined) assertValidSchemaName(schema);
  refuseInsideTransactionOn(db, 'idempotencyStats');
  listenForIdleErrors(db);
  const table = keysTable(schema);
  const [row] = await queryRows<StatsRow>(
    db,
    sql`with counts as (
          select count(*) filter (where expires_at > statement_timestamp())::bigint as live,
                 count(*) filter (where expires_at <= statement_timestamp())::bigint as expired,
                 count(*) filter (where status = 'started')::bigint as in_progress
          from ${table}),
        oldest as (
          select scope, key, created_at, expires_at from ${table}
          where expires_at > statement_timestamp()
          order by created_at, scope, key
          limit 1),
        rel as (select ${keysTableOid(schema)} as oid)
        select counts.live, counts.expired, counts.in_progress,
               oldest.scope as oldest_scope, oldest.key as oldest_key,
               oldest.created_at as oldest_created_at, oldest.expires_at as oldest_expires_at,
               pg_table_size(rel.oid) as table_bytes, pg_indexes_size(rel.oid) as index_bytes,
               statement_timestamp() as now
        from counts cross join rel left join oldest on true`,
  );
  if (!row) throw new Error('the stats query returned no row');
  return {
    live: Number(row.live),
    expired: Number(row.expired),
    inProgress: Number(row.in_progress),
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
