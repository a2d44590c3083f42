import { sql } from 'drizzle-orm';
import { isTransaction, singleConnectionOf, type IdempotencyDatabase, type SqlRunner, type TransactionOf } from '../driver/database.js';
import { whileListening, whileListeningIn } from '../driver/client-errors.js';
import { inSavepoint } from '../driver/savepoint.js';
import { refuseDriverWithoutTransactions } from '../driver/interactive-transactions.js';
import { transactionThatCommits } from '../driver/postgres-js-commit.js';
import { checkoutPoolOf, inPoolTransaction, poolRunner, type Pipeline, type PoolSource } from '../driver/pool-transaction.js';
import { DEADLOCK_DETECTED, IN_FAILED_SQL_TRANSACTION, SERIALIZATION_FAILURE, sqlState, statementState } from '../driver/pg-error.js';
import { PreparedStatementsRefused } from '../driver/statement.js';
import { FusedQueryLost } from '../driver/fused-query.js';
import {
  IdempotencyDeadlockError,
  IdempotencyError,
  IdempotencyInFlightError,
  IdempotencyOptionsInvalidError,
  IdempotencySerializationError,
} from '../shared/errors.js';
import { claimKey, reclaimKey, releaseLoneClaim } from './claim.js';
import { explainFailure, type Progress } from './failure.js';
import { resolveOptions, type IdempotencyOptions, type ResolvedOptions } from './options.js';
import { serializeResult, type Jsonified } from './result.js';
import { lookupStored, readKey, replayOf, type IdempotentOutcome, type KeyRow } from './stored-key.js';
import { storeResult } from './store.js';
import { lookupGoesAlone, noteLookup } from './lookup-mode.js';
import {
  startTrace,
  traceAttempt,
  traceCall,
  traceClaimed,
  traceReclaimed,
  traceResult,
  traceRolledBack,
  traceWaited,
  type CallTrace,
} from '../telemetry/publish.js';
import {
  asRunningCall,
  connectionOf,
  inKeyTurn,
  inTransactionTurn,
  onSingleConnection,
  outsideCalls,
  refuseInsideTransactionOn,
  refuseReentrantCall,
} from './turns.js';


type Fn<T> = (tx: IdempotencyDatabase) => Promise<T>;

/**
 * Runs `fn` at most once per `(scope, key)` while the key lives, and returns
 * its result as stored (JSON: a Date is its ISO string); a duplicate gets the
 * same stored result without running `fn`.
 *
 * Given a transaction, the claim, `fn` and the stored result share one
 * savepoint inside it, and commit with it. Given a database, it opens the
 * transaction itself; on a node-postgres pool created with `pipeline: true`
 * it sends BEGIN together with the claim and the store together with COMMIT.
 *
 * @example
 * const charge = await db.transaction((tx) =>
 *   withIdempotency(tx, key, async (tx) => {
 *     const [row] = await tx.insert(charges).values({ amount: 500 }).returning();
 *     return row;
 *   }, { scope: customerId, fingerprint: { amount: 500 } }),
 * );
 */
export async function withIdempotency<TDb extends IdempotencyDatabase, T>(
  db: TDb,
  key: string,
  fn: (tx: TransactionOf<TDb>) => Promise<T>,
  options?: IdempotencyOptions,
): Promise<Jsonified<T>> {
  return (await withIdempotencyOutcome(db, key, fn, options)).value;
}

/**
 * `withIdempotency`, also telling whether the result is a replay.
 *
 * @example
 * const { value, replayed } = await withIdempotencyOutcome(db, key, placeOrder);
 * res.set('Idempotent-Replayed', String(replayed)).json(value);
 */
export async function withIdempotencyOutcome<TDb extends IdempotencyDatabase, T>(
  db: TDb,
  key: string,
  fn: (tx: TransactionOf<TDb>) => Promise<T>,
  options?: IdempotencyOptions,
): Promise<IdempotentOutcome<Jsonified<T>>> {
  const o = resolveOptions(key, options);
  assertCallable(db, fn);
  refuseDriverWithoutTransactions(db, 'withIdempotency');
  refuseReentrantCall(o);
  o.trace = startTrace(o.scope, o.key, o.onInFlight, isTransaction(db) ? 'caller' : 'own');
  // Every path returns the result as jsonb gave it back (storeResult, replayOf): its JSON form.
  const call = runCall(db, o, fn as Fn<T>) as Promise<IdempotentOutcome<Jsonified<T>>>;
  return o.trace ? traceCall(o.trace, call) : call;
}

/** The call, on options checked. */
function runCall<T>(db: IdempotencyDatabase, o: ResolvedOptions, fn: Fn<T>): Promise<IdempotentOutcome<T>> {
  if (isTransaction(db)) return inCallersTransaction(db, o, fn);
  const pool = checkoutPoolOf(db);
  const reader = pool ? poolRunner(pool, db) : db;
  const lookup = () => lookupStored<T>(reader, o);
  // On a pool of our own, the lookup may travel with BEGIN and the claim instead (see lookup-mode.ts).
  const alone = o.lookupFirst && (!pool || lookupGoesAlone(pool.pool));
  const run = async (): Promise<IdempotentOutcome<T>> => {
    // Before any turn: replays of a completed key never queue behind each other.
    const hit = alone ? await lookup() : undefined;
    if (alone && pool) noteLookup(pool.pool, hit !== undefined);
    if (hit) return hit;
    return inKeyTurn(
      connectionOf(db),
      o,
      async (waitedForDuplicate, remainingMs): Promise<IdempotentOutcome<T>> => {
        if (waitedForDuplicate && o.trace) outsideCalls(() => traceWaited(o.trace, 'process'));
        // A duplicate of this process ran first: most likely it completed.
        const replay = waitedForDuplicate ? await lookup() : undefined;
        if (replay) return replay;
        const bound = waitedForDuplicate ? { ...o, lockTimeoutMs: remainingMs } : o;
        return inOwnTransaction(db, pool, bound, fn, o.lookupFirst && !alone && !waitedForDuplicate);
      },
      lookup,
    );
  };
  const single = singleConnectionOf(db);
  // A lone client (or one checked out of a pool) has nobody listening for its errors: we do while we use it.
  return single ? onSingleConnection(single, o, () => whileListening(single, run)) : run();
}

/**
 * The stored result of a completed, live key, with one SELECT and no
 * transaction; undefined when the key is new, expired or in flight. `T` is
 * what `fn` returned; the value is its JSON form, as `withIdempotency` returns it.
 *
 * @example
 * const hit = await lookupReplay(db, key, { scope: userId });
 * if (hit) return res.json(hit.value);
 */
export async function lookupReplay<T = unknown>(
  db: IdempotencyDatabase,
  key: string,
  options?: Pick<IdempotencyOptions, 'scope' | 'fingerprint' | 'schema' | 'prepare'>,
): Promise<IdempotentOutcome<Jsonified<T>> | undefined> {
  const o = resolveOptions(key, options);
  refuseInsideTransactionOn(db, 'lookupReplay');
  // On a node-postgres pool this also starts listening for its idle connections' errors.
  const pool = isTransaction(db) ? undefined : checkoutPoolOf(db);
  return lookupStored<Jsonified<T>>(pool ? poolRunner(pool, db) : db, o);
}

/** Checks the two arguments the type system checks for TypeScript callers only. */
function assertCallable(db: unknown, fn: unknown): void {
  const methods = db as Partial<IdempotencyDatabase> | null;
  if (typeof methods?.execute !== 'function' || typeof methods.transaction !== 'function') {
    throw new IdempotencyOptionsInvalidError('db must be a Drizzle PostgreSQL database or transaction');
  }
  if (typeof fn !== 'function') throw new IdempotencyOptionsInvalidError('fn must be a function that takes the transaction');
}

/** In the caller's transaction: one savepoint, in this call's turn on that transaction. */
async function inCallersTransaction<T>(tx: IdempotencyDatabase, o: ResolvedOptions, fn: Fn<T>): Promise<IdempotentOutcome<T>> {
  const connection = connectionOf(tx);
  return inTransactionTurn(connection, async () => {
    const progress: Progress = { phase: 'claim' };
    try {
      // A savepoint: if fn throws, the claim and fn's writes roll back even
      // when the caller catches and commits.
      return await whileListening(connection, () => inSavepoint(tx, () => claimRunStore(tx, o, fn, progress, false)));
    } catch (error) {
      const failure = explainFailure(error, progress, 'caller');
      rolledBack(o.trace, progress, failure);
      throw failure;
    }
  });
}

/**
 * In a transaction of our own, run again when Postgres asks for it (the retry
 * replays). `lookupAhead`: on a pool, the lookup goes out in the same write as
 * BEGIN and the claim.
 */
async function inOwnTransaction<T>(
  db: IdempotencyDatabase,
  pool: PoolSource | undefined,
  o: ResolvedOptions,
  fn: Fn<T>,
  lookupAhead = false,
): Promise<IdempotentOutcome<T>> {
  // Reruns after the pool changed how it sends (unnamed statements, BEGIN and COMMIT apart): once each.
  const switched = new Set<unknown>();
  for (let attempt = 0; ; attempt++) {
    const progress: Progress = { phase: 'claim' };
    traceAttempt(o.trace);
    try {
      if (pool) return await inPoolTransaction(pool, o.transaction, (p) => claimRunStoreOnPool(p, o, fn, progress, lookupAhead ? pool.pool : undefined));
      return await transactionThatCommits(db, o.transaction, (tx) => whileListeningIn(tx, () => claimRunStore(tx, o, fn, progress, true)));
    } catch (error) {
      // Nothing committed: the transaction failed at a named statement the
      // server refused, or at a fused query sent without its BEGIN or COMMIT.
      const kind = error instanceof PreparedStatementsRefused ? PreparedStatementsRefused : error instanceof FusedQueryLost ? FusedQueryLost : undefined;
      if (kind && !switched.has(kind)) {
        rolledBack(o.trace, progress, error);
        switched.add(kind);
        attempt--;
        continue;
      }
      const failure = explainFailure(error, progress, 'own');
      rolledBack(o.trace, progress, failure);
      const again = failure instanceof IdempotencySerializationError || failure instanceof IdempotencyDeadlockError;
      if (!again || attempt >= o.serializationRetries) throw failure;
    }
  }
}

async function claimRunStore<T>(tx: IdempotencyDatabase, o: ResolvedOptions, fn: Fn<T>, progress: Progress, own: boolean): Promise<IdempotentOutcome<T>> {
  const live = await acquire(tx, o, claimKey(tx, o));
  if (live) return replayed(live, o, progress);
  const json = await runFn(tx, o, fn, progress, own);
  const outcome = await storeResult<T>(tx, o, json);
  progress.phase = 'stored';
  return outcome;
}

/**
 * `claimRunStore` on a connection of our own: two round trips fewer, because
 * BEGIN goes out with the claim and COMMIT with the store (under one Sync each,
 * or pipelined). A store that fails aborts the transaction, so the COMMIT
 * behind it does not commit.
 */
async function claimRunStoreOnPool<T>(
  p: Pipeline,
  o: ResolvedOptions,
  fn: Fn<T>,
  progress: Progress,
  lookupOn: object | undefined,
): Promise<IdempotentOutcome<T>> {
  // The lookup goes out first (it is not part of the transaction); BEGIN goes
  // out ahead of the claim, under its Sync. Pipelined, all in one write;
  // otherwise the claim would only wait behind the lookup, so it waits for its answer.
  let claimed: Promise<boolean> | undefined;
  const claim = () => claimKey(p.opening, o).catch(async (error: unknown) => {
    // The claim went out without BEGIN and committed on its own: its row holds nothing yet, and is ours to remove.
    if (error instanceof FusedQueryLost && error.rows?.length === 1) await releaseLoneClaim(p.runner, o);
    throw error;
  });
  const found = p.together(() => {
    const lookup = lookupOn ? lookupStored<T>(p.runner, o, false) : undefined;
    if (!lookup || p.pipelined) claimed = claim();
    return lookup;
  });
  if (found) {
    // Settled below, unless the lookup answers first.
    claimed?.catch(() => {});
    const hit = await found;
    noteLookup(lookupOn!, hit !== undefined);
    if (hit) {
      // The claim, if sent, found the key and did nothing.
      if (claimed) await p.rollback();
      progress.phase = 'stored';
      return hit;
    }
  }
  const live = await acquire(p.runner, o, claimed ?? claim());
  if (live) return replayed(live, o, progress);
  const json = await runFn(p.tx, o, fn, progress, true);
  // COMMIT leaves right behind the store, before its answer: the store must
  // fail in SQL when it cannot complete the key (failInSql), so that this
  // COMMIT does not run (or, pipelined, rolls back). (node-postgres refuses to
  // send a query only for a malformed config, which the store's is not.)
  const [stored, committed] = await p.close((runner) => storeResult<T>(runner, o, json, true));
  if (stored.status === 'rejected') {
    // No answer from the server (a client-side timeout, a dead socket): the
    // COMMIT queued behind the store may still have run.
    const known = sqlState(stored.reason) !== undefined || stored.reason instanceof IdempotencyError || stored.reason instanceof FusedQueryLost;
    if (!known) progress.phase = 'stored';
    throw stored.reason;
  }
  progress.phase = 'stored';
  if (committed.status === 'rejected') throw committed.reason;
  return stored.value;
}

/**
 * Runs `fn` as the running call for this key, and serialises its result.
 * `own`: the transaction is the library's, which runs it again when Postgres
 * aborted it at one of fn's statements with a serialization failure or deadlock.
 */
async function runFn<T>(tx: IdempotencyDatabase, o: ResolvedOptions, fn: Fn<T>, progress: Progress, own: boolean): Promise<string> {
  progress.phase = 'fn';
  let value: T;
  try {
    value = await asRunningCall(o, tx, fn);
  } catch (error) {
    if (own) progress.conflict = await conflictThatAborted(tx, error);
    throw error;
  }
  progress.phase = 'store';
  const json = serializeResult(value, o.maxResultBytes);
  traceResult(o.trace, json);
  return json;
}

/**
 * The SQLSTATE of `error` when it is Postgres failing a statement with a
 * serialization failure or deadlock and the transaction on `tx` is aborted
 * (so that statement was one of ours): nothing of the attempt can commit.
 * A conflict from another connection (autocommitted work elsewhere, which a
 * rerun would repeat), or one that fn caught and wrapped in its own error,
 * is not: that error stays fn's.
 */
async function conflictThatAborted(tx: IdempotencyDatabase, error: unknown): Promise<string | undefined> {
  const state = statementState(error);
  if (state !== SERIALIZATION_FAILURE && state !== DEADLOCK_DETECTED) return undefined;
  try {
    await tx.execute(sql`select 1`);
    return undefined;
  } catch (probe) {
    return sqlState(probe) === IN_FAILED_SQL_TRANSACTION ? state : undefined;
  }
}

/** Tells telemetry that a failed attempt had held the key: its claim and fn's writes are gone. */
function rolledBack(trace: CallTrace | undefined, progress: Progress, error: unknown): void {
  const phase = progress.phase;
  if (trace && (phase === 'fn' || phase === 'store')) outsideCalls(() => traceRolledBack(trace, phase, error));
}

function replayed<T>(row: KeyRow, o: ResolvedOptions, progress: Progress): IdempotentOutcome<T> {
  const outcome = replayOf<T>(row, o);
  progress.phase = 'stored';
  return outcome;
}

// Rounds of claim / read / reclaim before giving up: each lost round means
// another transaction changed the row in between (a reclaim, a sweep).
const ACQUIRE_ROUNDS = 3;

/**
 * Given the first claim, sent by the caller: resolves undefined once the key
 * is ours (claimed, or its dead row taken over), or the live row that stands.
 */
async function acquire(tx: SqlRunner, o: ResolvedOptions, claimed: Promise<boolean>): Promise<KeyRow | undefined> {
  for (let round = 0; round < ACQUIRE_ROUNDS; round++) {
    if (await (round === 0 ? claimed : claimKey(tx, o))) {
      if (o.trace) outsideCalls(() => traceClaimed(o.trace));
      return undefined;
    }
    const row = await readKey(tx, o);
    if (row.status === null) continue; // swept between our two statements: claim again
    if (!row.reclaimable) {
      if (row.waited && o.trace) outsideCalls(() => traceWaited(o.trace, 'database'));
      return row;
    }
    if (await reclaimKey(tx, o)) {
      if (o.trace) outsideCalls(() => traceReclaimed(o.trace, row.status === 'started' ? 'started' : 'completed'));
      return undefined;
    }
  }
  throw new IdempotencyInFlightError(`idempotency key ${JSON.stringify(o.key)} kept changing under concurrent reclaims; retry`);
}
