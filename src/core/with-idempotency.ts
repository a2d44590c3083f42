import { claimKey, reclaimKey } from './claim.js';
import { isTransaction, type IdempotencyDatabase, type SqlRunner, type TransactionOf } from '../driver/database.js';
import { IdempotencyInFlightError, IdempotencySerializationError } from '../shared/errors.js';
import { resolveOptions, type IdempotencyOptions, type ResolvedOptions } from './options.js';
import { inPipelinedTransaction, pipelineSourceOf, type Pipeline } from '../driver/pipelined-transaction.js';
import { serializeResult } from './result.js';
import { lookupStored, readKey, replayOf, type IdempotentOutcome, type KeyRow } from './stored-key.js';
import { storeResult } from './store.js';

/**
 * Runs `fn` at most once per `(scope, key)` while the key lives, and returns
 * its result; a duplicate gets the stored result without running `fn`.
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
): Promise<T> {
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
): Promise<IdempotentOutcome<T>> {
  const o = resolveOptions(key, options);
  const run = (tx: TransactionOf<TDb>) => claimRunStore(tx as IdempotencyDatabase, o, fn as (tx: IdempotencyDatabase) => Promise<T>);
  // On a transaction, `transaction()` is a savepoint: if fn throws, the claim
  // and fn's writes roll back even when the caller catches and commits.
  if (isTransaction(db)) return db.transaction(run as (tx: IdempotencyDatabase) => Promise<IdempotentOutcome<T>>);

  if (o.lookupFirst) {
    const hit = await lookupStored<T>(db, o);
    if (hit) return hit;
  }
  const pipeline = pipelineSourceOf(db);
  for (let attempt = 0; ; attempt++) {
    try {
      if (pipeline) return await inPipelinedTransaction(pipeline, o.transaction, (p) => claimRunStorePipelined(p, o, fn as (tx: IdempotencyDatabase) => Promise<T>));
      return await db.transaction(run as (tx: IdempotencyDatabase) => Promise<IdempotentOutcome<T>>, o.transaction);
    } catch (error) {
      // We own this transaction, so we may run it again: the new snapshot sees
      // the duplicate's committed row and replays it.
      if (!(error instanceof IdempotencySerializationError) || attempt >= o.serializationRetries) throw error;
    }
  }
}

/**
 * The stored result of a completed, live key, with one SELECT and no
 * transaction; undefined when the key is new, expired or in flight.
 *
 * @example
 * const hit = await lookupReplay(db, key, { scope: userId });
 * if (hit) return res.json(hit.value);
 */
export async function lookupReplay<T = unknown>(
  db: IdempotencyDatabase,
  key: string,
  options?: Pick<IdempotencyOptions, 'scope' | 'fingerprint' | 'schema' | 'prepare'>,
): Promise<IdempotentOutcome<T> | undefined> {
  return lookupStored<T>(db, resolveOptions(key, options));
}

async function claimRunStore<T>(
  tx: IdempotencyDatabase,
  o: ResolvedOptions,
  fn: (tx: IdempotencyDatabase) => Promise<T>,
): Promise<IdempotentOutcome<T>> {
  const live = await acquire(tx, o, claimKey(tx, o));
  if (live) return replayOf<T>(live, o);
  const json = serializeResult(await fn(tx), o.maxResultBytes);
  return { value: await storeResult<T>(tx, o, json), replayed: false };
}

/**
 * `claimRunStore` in a pipelined transaction: two round trips fewer, because
 * BEGIN goes out with the claim and the store with COMMIT. A store that fails
 * aborts the transaction, so the COMMIT behind it rolls back.
 */
async function claimRunStorePipelined<T>(
  p: Pipeline,
  o: ResolvedOptions,
  fn: (tx: IdempotencyDatabase) => Promise<T>,
): Promise<IdempotentOutcome<T>> {
  const [begun, claimed] = p.together(() => [p.begin(), claimKey(p.runner, o)] as const);
  await both(begun, claimed);
  const live = await acquire(p.runner, o, claimed);
  if (live) return replayOf<T>(live, o);
  const json = serializeResult(await fn(p.tx), o.maxResultBytes);
  // COMMIT leaves right behind the store, before its answer: the store must
  // fail in SQL when it cannot complete the key (failInSql), so that this
  // COMMIT rolls back. (node-postgres refuses to send a query only for a
  // malformed config, which the store's is not.)
  const [value] = await both(...p.together(() => [storeResult<T>(p.runner, o, json, true), p.commit()] as const));
  return { value, replayed: false };
}

/** Both results; else the first one's error (the second often just follows from it). */
async function both<A, B>(first: Promise<A>, second: Promise<B>): Promise<[A, B]> {
  const [a, b] = await Promise.allSettled([first, second]);
  if (a.status === 'rejected') throw a.reason;
  if (b.status === 'rejected') throw b.reason;
  return [a.value, b.value];
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
    if (await (round === 0 ? claimed : claimKey(tx, o))) return undefined;
    const row = await readKey(tx, o);
    if (row.status === null) continue; // swept between our two statements: claim again
    if (!row.reclaimable) return row;
    if (await reclaimKey(tx, o)) return undefined;
  }
  throw new IdempotencyInFlightError(`idempotency key ${JSON.stringify(o.key)} kept changing under concurrent reclaims; retry`);
}
