import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { reclaimable } from '../core/claim.js';
import { queryRows, type SqlRunner } from '../driver/database.js';
import { fromNow, HELD_COLUMNS, now, thisKey, type KeyAddress } from './key-address.js';
import { heldOf, type Held, type HeldRow } from './held.js';

// How long a takeover may wait on the key row's lock, held by a local step of
// the current owner (whose commit then extends the lease, so the takeover finds
// nothing) or by a paused owner's open step: past it, the key counts as in flight.
export const ROW_LOCK_WAIT_MS = 1_000;

/** A FROM item that bounds this statement's lock waits (the implicit transaction of one statement). */
export const boundedBy = (ms: number) => sql`(select set_config('lock_timeout', ${`${ms}ms`}, true)) as bound`;

/** What a claim stores besides the key: the request's fingerprint, the workflow and its input. */
export interface ClaimValues {
  fingerprint: string | null;
  workflow: string;
  /** The input in `serializeResult`'s envelope. */
  inputJson: string;
  ttlMs: number;
  leaseMs: number;
  /** How long the INSERT may wait on an in-transaction claim of the same key (withIdempotency's uncommitted row). */
  lockTimeoutMs: number;
}

/**
 * Claims a new key for leased work: one statement, so one short transaction
 * that commits at once, leaving a `started` row with a fresh owner token and
 * a lease by the database clock. Undefined when the key has a row already.
 * The row expires a TTL after the claim: completion moves it (the TTL is the
 * distance between `created_at` and `expires_at`, so whoever completes the
 * key keeps the caller's TTL).
 */
export async function claimNew(db: SqlRunner, k: KeyAddress, c: ClaimValues): Promise<Held | undefined> {
  const [row] = await queryRows<HeldRow>(
    db,
    sql`insert into ${k.table} (scope, key, fingerprint, status, expires_at, locked_until, owner_token, workflow, input, steps, attempts)
        select ${k.scope}, ${k.key}, ${c.fingerprint}, 'started', ${fromNow(c.ttlMs)}, ${fromNow(c.leaseMs)}, ${randomUUID()}::uuid,
               ${c.workflow}, (${c.inputJson}::jsonb) -> 'value', '{}'::jsonb, 1
        from ${boundedBy(c.lockTimeoutMs)}
        on conflict (scope, key) do nothing
        returning ${HELD_COLUMNS}`,
  );
  return row ? heldOf(row) : undefined;
}

/** A key row as leased work reads it before deciding: replay, wait, take over or fail. */
export interface LeasedRow {
  status: 'started' | 'completed' | 'failed';
  fingerprint: string | null;
  workflow: string | null;
  owner_token: string | null;
  attempts: number | string;
  recovery_point: string | null;
  /** Its lease still runs. */
  live: boolean;
  /** Whole seconds until the lease runs out, at least 1. */
  retry_after: number | string | null;
  /** A dead row (expired, or an in-transaction leftover past its lease) that a claim may reuse. */
  reclaimable: boolean;
  response: string | null;
  expires_ms: number | string;
}

/** Reads the key; undefined when it has no row. */
export async function readLeasedKey(db: SqlRunner, k: KeyAddress): Promise<LeasedRow | undefined> {
  const [row] = await queryRows<LeasedRow>(
    db,
    sql`select status, fingerprint, workflow, owner_token::text as owner_token, attempts, recovery_point,
               coalesce(locked_until > ${now}, false) as live,
               greatest(1, ceil(extract(epoch from (locked_until - ${now}))))::int as retry_after,
               ${reclaimable(sql`k`)} as reclaimable, response::text as response,
               (extract(epoch from expires_at) * 1000)::float8 as expires_ms
        from ${k.table} as k where ${thisKey(k)}`,
  );
  return row;
}

/**
 * Takes leased work over from `formerToken`, whose lease ran out: a new
 * token, a new lease, one more attempt. The WHERE holds for one taker only
 * (the first to update changes the token); a taker that waited on a local
 * step's row lock sees that step's commit, which extended the lease, and
 * finds nothing to take.
 */
export async function takeOver(db: SqlRunner, k: KeyAddress, formerToken: string, leaseMs: number): Promise<Held | undefined> {
  const [row] = await queryRows<HeldRow>(
    db,
    sql`update ${k.table} set owner_token = ${randomUUID()}::uuid, locked_until = ${fromNow(leaseMs)}, attempts = attempts + 1
        from ${boundedBy(ROW_LOCK_WAIT_MS)}
        where ${thisKey(k)} and status = 'started' and owner_token = ${formerToken}::uuid and locked_until <= ${now}
        returning ${HELD_COLUMNS}`,
  );
  return row ? heldOf(row) : undefined;
}

/** Claims a dead row (expired, or an in-transaction leftover) as if the key were new. */
export async function reclaimDead(db: SqlRunner, k: KeyAddress, c: ClaimValues): Promise<Held | undefined> {
  const [row] = await queryRows<HeldRow>(
    db,
    sql`update ${k.table} as k set fingerprint = ${c.fingerprint}, status = 'started', response = null, created_at = ${now}, completed_at = null,
          expires_at = ${fromNow(c.ttlMs)}, locked_until = ${fromNow(c.leaseMs)}, owner_token = ${randomUUID()}::uuid, workflow = ${c.workflow},
          input = (${c.inputJson}::jsonb) -> 'value', steps = '{}'::jsonb, recovery_point = null, attempts = 1
        from ${boundedBy(ROW_LOCK_WAIT_MS)}
        where ${thisKey(k)} and ${reclaimable(sql`k`)}
        returning ${HELD_COLUMNS}`,
  );
  return row ? heldOf(row) : undefined;
}

/** What a key recorded as failed says, for the error every replay gets. */
export interface FailedRow {
  workflow: string | null;
  recovery_point: string | null;
  attempts: number | string;
}

// A failed key lives the TTL its claim was given (expires_at - created_at), from now.
const FAILED = sql`status = 'failed', owner_token = null, locked_until = null, response = null, completed_at = ${now},
      expires_at = ${now} + (expires_at - created_at)`;

/**
 * Records the holder's own last attempt as failed; undefined when its lease
 * was lost. Its wait on the row lock is bounded (a local step of this very
 * run, left running, may hold it): past it, SQLSTATE 55P03.
 */
export async function failHeld(db: SqlRunner, k: KeyAddress, token: string): Promise<FailedRow | undefined> {
  const [row] = await queryRows<FailedRow>(
    db,
    sql`update ${k.table} set ${FAILED}
        from ${boundedBy(ROW_LOCK_WAIT_MS)}
        where ${thisKey(k)} and status = 'started' and owner_token = ${token}::uuid
        returning workflow, recovery_point, attempts`,
  );
  return row;
}
