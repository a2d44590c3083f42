import { sql } from 'drizzle-orm';
import { isTransaction, queryRows, type IdempotencyDatabase } from '../driver/database.js';
import { QUERY_CANCELED, sqlState } from '../driver/pg-error.js';
import { listenForIdleErrors } from '../driver/pool-transaction.js';
import { redact } from '../driver/redacted-error.js';
import { keysTable } from '../schema/keys-table.js';
import type { IdempotencyKeyStatus } from '../schema/table.js';
import { parseDuration, type Duration } from '../shared/duration.js';
import { IdempotencyInFlightError, IdempotencyOptionsInvalidError } from '../shared/errors.js';
import {
  assertDatabase,
  assertOptionalBoolean,
  inTransaction,
  isLockTimeout,
  keyAddress,
  probeKey,
  readKeyRow,
  takeOperatorTurn,
  type KeyAddress,
  type KeyRow,
} from './key-row.js';
import { refuseInsideTransactionOn } from '../core/turns.js';

/** Options of `evictKey`. */
export interface EvictKeyOptions {
  /** The scope the key was used in. (Default: `''`) */
  scope?: string;
  /**
   * Remove the key even when it is in flight: a `started` row is deleted
   * (but never leased work whose lease is held: a run is working on it), and
   * a key a live transaction holds is waited for (at most `waitTimeout`), then
   * deleted if that transaction left it `started` or expired, or left the
   * result that was there before; a result it completed is left to replay
   * (`IDEMPOTENCY_IN_FLIGHT`). (Default: `false`)
   */
  force?: boolean;
  /** With `force`: how long to wait for a transaction that holds the key. (Default: `'5s'`) */
  waitTimeout?: Duration;
  /** Postgres schema that holds `idempotency_keys`. (Default: the search_path) */
  schema?: string;
}

/** The row `evictKey` deleted, as it was. Never the stored result itself. */
export interface EvictedKey {
  scope: string;
  key: string;
  status: IdempotencyKeyStatus;
  /** It was past `expires_at` already. */
  expired: boolean;
  createdAt: Date;
  completedAt: Date | null;
  expiresAt: Date;
  lockedUntil: Date | null;
  fingerprint: string | null;
  responseBytes: number | null;
  /** Leased work: its workflow; `null` for an in-transaction call's key. */
  workflow: string | null;
  /** Leased work: the last step that had committed. */
  recoveryPoint: string | null;
  /** Leased work: the names of the steps it had recorded (removed with it: a new run repeats them), sorted. */
  recordedSteps: string[];
  /** Leased work: its attempts so far; 0 for other keys. */
  attempts: number;
  /** Leased work that a run owned (an owner token was set). */
  hasOwnerToken: boolean;
  /** The database clock at the deletion. */
  evictedAt: Date;
}

export const DEFAULT_EVICT_WAIT_MS = 5_000;
// Without force a held key is refused, not waited for: 1 ms is the shortest lock_timeout.
const NO_WAIT_MS = 1;
// lock_timeout is an int of milliseconds: the server would refuse a longer bound.
const MAX_WAIT_MS = 2 ** 31 - 1;

/**
 * Deletes one key so that the next call with it runs `fn` again. Refuses
 * (`IDEMPOTENCY_IN_FLIGHT`, nothing deleted) a key that is in flight: a live
 * transaction's claim, a row a live transaction has locked, or a `started`
 * row; it finds out without waiting. Leased work (a `started` row with an
 * owner token) whose lease is held is refused even with `force`: a run is
 * working on it, and deleting its recorded steps under it would let a retry
 * start over beside it; once the lease ran out, `force` deletes it with its
 * recorded steps. With `force` it deletes a `started` row,
 * and waits up to `waitTimeout` for a live transaction to let go of the key
 * (then `IDEMPOTENCY_IN_FLIGHT` if it has not); once it has, it deletes what is
 * still stuck (a `started` row) or expired, but never a result that live
 * transaction completed: that one replays, and deleting it would let a retry
 * run `fn` a second time (`IDEMPOTENCY_IN_FLIGHT`, nothing deleted; evict
 * again, without `force`, to remove it anyway). Resolves to the row it
 * deleted, or `null` when there was no key to delete.
 *
 * Pass the database, not a transaction: the deletion commits on its own.
 *
 * @example
 * const removed = await evictKey(db, 'order-42', { scope: 'tenant-7' });
 * console.log(removed ? `removed a ${removed.status} key` : 'no such key');
 */
export async function evictKey(db: IdempotencyDatabase, key: string, options: EvictKeyOptions = {}): Promise<EvictedKey | null> {
  const at = keyAddress(key, options);
  assertOptionalBoolean(options.force, 'force');
  const force = options.force === true;
  const waitMs = options.waitTimeout === undefined ? DEFAULT_EVICT_WAIT_MS : parseDuration(options.waitTimeout, 'waitTimeout');
  if (waitMs > MAX_WAIT_MS) throw new IdempotencyOptionsInvalidError(`waitTimeout must be at most ${MAX_WAIT_MS} ms (PostgreSQL's lock_timeout limit)`);
  assertDatabase(db);
  if (isTransaction(db)) {
    throw new IdempotencyOptionsInvalidError('evictKey needs a database, not a transaction: the deletion commits on its own');
  }
  refuseInsideTransactionOn(db, 'evictKey');
  listenForIdleErrors(db);
  // What is there now, unheld, is what the operator asked to remove.
  const first = await attempt(db, at, { force, boundMs: NO_WAIT_MS, waitedFor: undefined });
  if (!first.held) return first.removed;
  if (!force) throw refused(at, 'a live transaction holds it: an uncommitted claim, or a change to its row');
  // Forced: wait for the holder, then remove only what it left stuck (or expired), or the result that was there before.
  const later = await attempt(db, at, { force, boundMs: waitMs, waitedFor: first.seen ?? null });
  if (!later.held) return later.removed;
  throw new IdempotencyInFlightError(
    `${name(at)} is still held by a live transaction after waiting ${waitMs} ms; nothing was removed. End that transaction first`,
  );
}

type Attempt = { held: false; removed: EvictedKey | null } | { held: true; seen: KeyRow | undefined };

/**
 * One look-and-delete in a transaction of its own, waiting at most `boundMs`
 * for a lock. A result that committed while it waited for a holder
 * (`waitedFor`: the committed row it saw before, or null) or while it probed
 * is not what the operator asked to remove: it is left alone, since deleting
 * it would let a retry run `fn` again beside the effect that just committed.
 */
async function attempt(
  db: IdempotencyDatabase,
  at: KeyAddress,
  { force, boundMs, waitedFor }: { force: boolean; boundMs: number; waitedFor: KeyRow | null | undefined },
): Promise<Attempt> {
  let seen: KeyRow | undefined;
  try {
    return await inTransaction<Attempt>(db, at.schema, async (tx) => {
      await takeOperatorTurn(tx, at, boundMs);
      // The committed row as it is, without waiting: what a holder may change while we wait.
      if (waitedFor === undefined) seen = await readKeyRow(tx, at, { lock: 'skip', response: false });
      // Twice at most: a claim that commits while we probe is a row on the second pass.
      for (let pass = 0; pass < 2; pass++) {
        const row = await readKeyRow(tx, at, { lock: 'update', response: false });
        if (row) {
          if (row.status === 'started' && row.hasOwnerToken && row.leaseHeld) throw leaseHeld(at, row);
          if (row.status === 'started' && !force) throw refused(at, startedWhy(row));
          const before = pass > 0 ? null : waitedFor;
          if (before !== undefined && row.status === 'completed' && !row.expired && !sameResult(before, row)) throw completedMeanwhile(at);
          await deleteRow(tx, at);
          const { response: _response, locked: _locked, leaseHeld: _leaseHeld, now, ...kept } = row;
          return { commit: true, value: { held: false, removed: { scope: at.scope, key: at.key, ...kept, evictedAt: now } } };
        }
        const probe = await probeKey(tx, at);
        if (probe.found === 'nothing') return { commit: false, value: { held: false, removed: null } };
        if (probe.found === 'held') return { commit: false, value: { held: true, seen } };
      }
      return { commit: false, value: { held: true, seen } };
    });
  } catch (error) {
    if (isLockTimeout(error)) return { held: true, seen };
    if (waitedFor !== undefined && sqlState(error) === QUERY_CANCELED) {
      throw new IdempotencyInFlightError(
        `${name(at)}: the wait for the live transaction holding it was cancelled (statement_timeout shorter than waitTimeout?); nothing was removed`,
        { cause: redact(error) },
      );
    }
    throw error;
  }
}

/** The same completed result: seen before the wait, still there after it. */
const sameResult = (before: KeyRow | null, after: KeyRow) =>
  before !== null &&
  before.status === 'completed' &&
  before.createdAt.getTime() === after.createdAt.getTime() &&
  before.completedAt?.getTime() === after.completedAt?.getTime();

async function deleteRow(tx: IdempotencyDatabase, at: KeyAddress): Promise<void> {
  await queryRows(tx, sql`delete from ${keysTable(at.schema)} where scope = ${at.scope} and key = ${at.key}`);
}

const name = (at: KeyAddress) => `idempotency key ${JSON.stringify(at.key)}${at.scope === '' ? '' : ` in scope ${JSON.stringify(at.scope)}`}`;

function refused(at: KeyAddress, why: string): IdempotencyInFlightError {
  return new IdempotencyInFlightError(`${name(at)} is in flight (${why}); nothing was removed. Pass force (the CLI's --force) to remove it anyway`);
}

/** Why a `started` row is in flight, in the words of the runbook. */
function startedWhy(row: KeyRow): string {
  if (!row.hasOwnerToken) return 'its row is started, without a result: a claim committed unfinished';
  const where = row.recoveryPoint === null ? 'no step recorded yet' : `recovery point ${JSON.stringify(row.recoveryPoint)}`;
  return (
    `leased work of workflow ${JSON.stringify(row.workflow)}, ${where}, attempt ${row.attempts}, lease ran out: ` +
    'the next retry or the completer (drizzle-idempotency complete) resumes it; removing it removes its recorded steps, and a new run repeats them'
  );
}

/** Refused even with force: deleting the row under a live run would let a retry start over beside it. */
function leaseHeld(at: KeyAddress, row: KeyRow): IdempotencyInFlightError {
  return new IdempotencyInFlightError(
    `${name(at)} is leased work in flight (workflow ${JSON.stringify(row.workflow)}, lease held until ${row.lockedUntil?.toISOString() ?? '?'}); ` +
      'nothing was removed, even with force: a run is working on it. Wait for it to finish or for its lease to run out',
  );
}

function completedMeanwhile(at: KeyAddress): IdempotencyInFlightError {
  return new IdempotencyInFlightError(
    `${name(at)} was completed while evict waited for the live transaction that held it: its result replays now, and nothing was removed. ` +
      'Removing it would let a retry run again beside the effect that just committed; evict it again (without force) if you mean that',
  );
}
