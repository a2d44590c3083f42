import { isTransaction, type IdempotencyDatabase } from '../driver/database.js';
import { listenForIdleErrors } from '../driver/pool-transaction.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { deserializeResult } from '../core/result.js';
import { assertDatabase, assertOptionalBoolean, inTransaction, keyAddress, probeKey, readKeyRow, takeOperatorTurn, type KeyRow } from './key-row.js';
import { refuseInsideTransactionOn } from '../core/turns.js';

/** Options of `inspectKey`. */
export interface InspectKeyOptions {
  /** The scope the key was used in. (Default: `''`) */
  scope?: string;
  /** Include the stored result in `response`. It is customer data: ask for it only when you need it. (Default: `false`) */
  showResponse?: boolean;
  /** Postgres schema that holds `idempotency_keys`. (Default: the search_path) */
  schema?: string;
}

/**
 * Where a key stands: `'completed'` (a stored result; it replays unless
 * `expired`), `'started'` (a committed row without a result: leased work, or a
 * claim whose transaction committed before its call finished), or `'claimed'`:
 * a live transaction's claim, not committed yet, so there is no row to read;
 * `'failed'`: leased work that failed for sure on its last attempt (replays get IDEMPOTENCY_WORKFLOW_FAILED).
 */
export type InspectedKeyStatus = 'completed' | 'started' | 'failed' | 'claimed';

/** One key as `inspectKey` found it, by the database clock. */
export interface InspectedKey {
  scope: string;
  key: string;
  status: InspectedKeyStatus;
  /** Past `expires_at`: the key behaves as absent, the next call runs `fn` again. */
  expired: boolean;
  /** A live transaction holds the key: its uncommitted claim, or a lock on the row (a call taking an expired key over, a sweep batch, an evict). */
  locked: boolean;
  /** What `evictKey` refuses without `force`: a claim, a locked row or a `started` row (with `force` too: leased work whose `lease` is `'held'`). */
  inFlight: boolean;
  /** When the key was claimed; `null` for `'claimed'`. */
  createdAt: Date | null;
  /** Time since `createdAt`, in ms. */
  ageMs: number | null;
  completedAt: Date | null;
  expiresAt: Date | null;
  /** The lease of leased work; `null` when there is none. */
  lockedUntil: Date | null;
  /** As stored: the hash of the request (HTTP layer, object fingerprints) or the string you gave. */
  fingerprint: string | null;
  /** Size of the stored result as JSON text, in bytes; `null` when none is stored. */
  responseBytes: number | null;
  /**
   * The lease of leased work, by the database clock: `'held'` while
   * `lockedUntil` lies ahead (a process is running it, or is paused: its
   * heartbeat keeps extending it), `'ran-out'` once it has passed (the holder
   * died, or released it when a run ended in an error or an unknown outcome:
   * the next retry or the completer resumes it), `'none'` without a lease (any
   * key that is not `started` leased work).
   */
  lease: 'held' | 'ran-out' | 'none';
  /** Leased work: the workflow's name, which the completer resumes it with; `null` for an in-transaction call's key. */
  workflow: string | null;
  /** Leased work: the recovery point, the last step that committed; `null` before the first (and for other keys). */
  recoveryPoint: string | null;
  /** Leased work: the names of the steps recorded so far, sorted by name; never their results (customer data). `[]` for other keys. */
  recordedSteps: string[];
  /** Leased work: claims, takeovers and resumes so far (1 on the first run); 0 for other keys. */
  attempts: number;
  /** Leased work: a run owns the key (an owner token is set); the token itself is never shown: it is what lets a run write the key. */
  hasOwnerToken: boolean;
  /** With `showResponse`: what `fn` returned, as every replay gets it (`undefined` when nothing is stored). */
  response?: unknown;
  /** The database clock the key was read at. */
  now: Date;
}

// Long enough to see a lock, short enough that a look never holds anyone up.
const PROBE_LOCK_TIMEOUT_MS = 1;

/**
 * Looks up one key without waiting and without changing anything: its
 * status, age, expiry, lease, fingerprint and result size; for leased work
 * also its workflow, recovery point, the names of its recorded steps and its
 * attempts (never the steps' results, the input or the owner token); and the
 * result itself with `showResponse`. Resolves to `null` when no row exists and no
 * transaction holds the key (a call would run `fn`).
 *
 * Pass the database, not a transaction: the look runs in a transaction of its
 * own that it always rolls back.
 *
 * @example
 * const found = await inspectKey(db, 'order-42', { scope: 'tenant-7' });
 * if (found?.inFlight) console.log(`held since ${found.createdAt?.toISOString() ?? 'an uncommitted claim'}`);
 */
export async function inspectKey(db: IdempotencyDatabase, key: string, options: InspectKeyOptions = {}): Promise<InspectedKey | null> {
  const at = keyAddress(key, options);
  assertOptionalBoolean(options.showResponse, 'showResponse');
  assertDatabase(db);
  if (isTransaction(db)) {
    throw new IdempotencyOptionsInvalidError('inspectKey needs a database, not a transaction: it looks in a transaction of its own');
  }
  const showResponse = options.showResponse === true;
  refuseInsideTransactionOn(db, 'inspectKey');
  listenForIdleErrors(db);
  return inTransaction(db, at.schema, async (tx) => {
    // Twice at most: a claim that commits between our read and our probe is read on the second pass.
    let now = new Date();
    await takeOperatorTurn(tx, at, PROBE_LOCK_TIMEOUT_MS);
    for (let pass = 0; pass < 2; pass++) {
      const row = await readKeyRow(tx, at, { lock: 'skip', response: showResponse });
      if (row) return { commit: false, value: fromRow(at, row, showResponse) };
      const probe = await probeKey(tx, at);
      if (probe.found === 'nothing') return { commit: false, value: null };
      if (probe.found === 'held') return { commit: false, value: claimed(at, probe.now) };
      now = probe.now;
    }
    // A key that keeps appearing and vanishing under us is in flight by any measure.
    return { commit: false, value: claimed(at, now) };
  });
}

function fromRow(at: { scope: string; key: string }, row: KeyRow, showResponse: boolean): InspectedKey {
  const found: InspectedKey = {
    scope: at.scope,
    key: at.key,
    status: row.status,
    expired: row.expired,
    locked: row.locked,
    inFlight: row.locked || row.status === 'started',
    createdAt: row.createdAt,
    ageMs: row.now.getTime() - row.createdAt.getTime(),
    completedAt: row.completedAt,
    expiresAt: row.expiresAt,
    lockedUntil: row.lockedUntil,
    fingerprint: row.fingerprint,
    responseBytes: row.responseBytes,
    lease: row.lockedUntil === null ? 'none' : row.leaseHeld ? 'held' : 'ran-out',
    workflow: row.workflow,
    recoveryPoint: row.recoveryPoint,
    recordedSteps: row.recordedSteps,
    attempts: row.attempts,
    hasOwnerToken: row.hasOwnerToken,
    now: row.now,
  };
  if (showResponse) found.response = row.response === null ? undefined : deserializeResult(row.response);
  return found;
}

function claimed(at: { scope: string; key: string }, now: Date): InspectedKey {
  return {
    scope: at.scope,
    key: at.key,
    status: 'claimed',
    expired: false,
    locked: true,
    inFlight: true,
    createdAt: null,
    ageMs: null,
    completedAt: null,
    expiresAt: null,
    lockedUntil: null,
    fingerprint: null,
    responseBytes: null,
    lease: 'none',
    workflow: null,
    recoveryPoint: null,
    recordedSteps: [],
    attempts: 0,
    hasOwnerToken: false,
    now,
  };
}
