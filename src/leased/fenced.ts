import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { queryRows, type SqlRunner } from '../driver/database.js';
import { fromNow, heldBy, now, type KeyAddress } from './key-address.js';
import { boundedBy, ROW_LOCK_WAIT_MS } from './lease.js';

// Every write of the lease holder names its token: after a takeover it
// matches nothing, and the caller turns that into IDEMPOTENCY_LEASE_LOST.

/** Extends the lease by `leaseMs` from now; false when the lease was lost. */
export async function extendLease(db: SqlRunner, k: KeyAddress, token: string, leaseMs: number): Promise<boolean> {
  const rows = await queryRows(db, sql`update ${k.table} set locked_until = ${fromNow(leaseMs)} where ${heldBy(k, token)} returning 1 as held`);
  return rows.length === 1;
}

/**
 * Locks the key row inside a local step's transaction, if `token` still
 * holds it. A takeover then waits for the step's transaction; once it has
 * happened, this finds nothing and the step runs nothing.
 */
export async function lockHeld(tx: SqlRunner, k: KeyAddress, token: string): Promise<boolean> {
  const rows = await queryRows(tx, sql`select 1 as held from ${k.table} where ${heldBy(k, token)} for update`);
  return rows.length === 1;
}

/**
 * Records a step's result (an envelope of JSON) and makes it the recovery
 * point, extending the lease as it goes; returns the result as jsonb stored
 * it, or undefined when the lease was lost.
 */
export async function recordStep(db: SqlRunner, k: KeyAddress, token: string, name: string, json: string, leaseMs: number): Promise<string | undefined> {
  const [row] = await queryRows<{ recorded: string }>(
    db,
    sql`update ${k.table} set steps = coalesce(steps, '{}'::jsonb) || jsonb_build_object(${name}::text, ${json}::jsonb), recovery_point = ${name},
          locked_until = greatest(locked_until, ${fromNow(leaseMs)})
        where ${heldBy(k, token)}
        returning (steps -> ${name}::text)::text as recorded`,
  );
  return row?.recorded;
}

/**
 * Completes the key with its response: the row becomes an ordinary completed
 * key (no token, no lease) that lives its TTL from now. Returns the response
 * as stored and its expiry, or undefined when the lease was lost.
 */
export async function completeHeld(
  db: SqlRunner,
  k: KeyAddress,
  token: string,
  json: string,
): Promise<{ response: string; expires_ms: number | string } | undefined> {
  const [row] = await queryRows<{ response: string; expires_ms: number | string }>(
    db,
    sql`update ${k.table} set status = 'completed', response = ${json}::jsonb, completed_at = ${now}, expires_at = ${now} + (expires_at - created_at),
          owner_token = null, locked_until = null
        where ${heldBy(k, token)}
        returning response::text as response, (extract(epoch from expires_at) * 1000)::float8 as expires_ms`,
  );
  return row;
}

/**
 * Ends the lease now, so that a retry or the completer may resume at once.
 * The token changes too: a step or call of the ended run still in flight (a
 * branch of Promise.all) can then record nothing, nor extend the lease again.
 * Such a local step holds the row lock until it ends, so the wait for it is
 * bounded: past it, SQLSTATE 55P03, and the lease runs out by itself.
 */
export async function releaseLease(db: SqlRunner, k: KeyAddress, token: string): Promise<void> {
  await queryRows(
    db,
    sql`update ${k.table} set locked_until = ${now}, owner_token = ${randomUUID()}::uuid from ${boundedBy(ROW_LOCK_WAIT_MS)} where ${heldBy(k, token)}`,
  );
}
