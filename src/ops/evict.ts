import { sql } from 'drizzle-orm';
import { isTransaction, queryRows, type IdempotencyDatabase } from '../driver/database.js';
import { listenForIdleErrors } from '../driver/pool-transaction.js';
import { keysTable } from '../schema/keys-table.js';
import type { IdempotencyKeyStatus } from '../schema/table.js';
import { parseDuration, type Duration } from '../shared/duration.js';
import { IdempotencyInFlightError, IdempotencyOptionsInvalidError } from '../shared/errors.js';
import {
  assertOptionalBoolean,
  inTransaction,
  isLockTimeout,
  keyAddress,
  probeKey,
  readKeyRow,
  setLockTimeout,
  type KeyAddress,
} from './key-row.js';

/** Options of `evictKey`. */
export interface EvictKeyOptions {
  /** The scope the key was used in. (Default: `''`) */
  scope?: string;
  /**
   * Remove the key even when it is in flight: a `started` row is deleted, and
   * a key a live transaction holds is waited for (at most `waitTimeout`), then
   * whatever that transaction committed is deleted. (Default: `false`)
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
 * row; it finds out without waiting. With `force` it deletes a `started` row,
 * and waits up to `waitTimeout` for a live transaction to let go of the key
 * (then `IDEMPOTENCY_IN_FLIGHT` if it has not). Resolves to the row it
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
  if (isTransaction(db)) {
    throw new IdempotencyOptionsInvalidError('evictKey needs a database, not a transaction: the deletion commits on its own');
  }
  listenForIdleErrors(db);
  const boundMs = force ? waitMs : NO_WAIT_MS;
  try {
    return await inTransaction(db, async (tx) => {
      await setLockTimeout(tx, boundMs);
      // Twice at most: a claim that commits while we probe is a row on the second pass.
      for (let pass = 0; pass < 2; pass++) {
        const row = await readKeyRow(tx, at, { lock: 'update', response: false });
        if (row) {
          if (row.status === 'started' && !force) throw refused(at, 'its row is started, without a result: leased work, or a claim committed unfinished');
          await deleteRow(tx, at);
          const { response: _response, locked: _locked, now, ...kept } = row;
          return { commit: true, value: { scope: at.scope, key: at.key, ...kept, evictedAt: now } };
        }
        const probe = await probeKey(tx, at);
        if (probe.found === 'nothing') return { commit: false, value: null };
        if (probe.found === 'held') throw held(at, force, boundMs);
      }
      throw held(at, force, boundMs);
    });
  } catch (error) {
    if (isLockTimeout(error)) throw held(at, force, boundMs);
    throw error;
  }
}

async function deleteRow(tx: IdempotencyDatabase, at: KeyAddress): Promise<void> {
  await queryRows(tx, sql`delete from ${keysTable(at.schema)} where scope = ${at.scope} and key = ${at.key}`);
}

const name = (at: KeyAddress) => `idempotency key ${JSON.stringify(at.key)}${at.scope === '' ? '' : ` in scope ${JSON.stringify(at.scope)}`}`;

function refused(at: KeyAddress, why: string): IdempotencyInFlightError {
  return new IdempotencyInFlightError(`${name(at)} is in flight (${why}); nothing was removed. Pass force (the CLI's --force) to remove it anyway`);
}

function held(at: KeyAddress, force: boolean, boundMs: number): IdempotencyInFlightError {
  return force
    ? new IdempotencyInFlightError(
        `${name(at)} is still held by a live transaction after waiting ${boundMs} ms; nothing was removed. End that transaction first`,
      )
    : refused(at, 'a live transaction holds it: an uncommitted claim, or a change to its row');
}
