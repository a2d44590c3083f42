import { claimKey, reclaimKey } from './claim.js';
import { isTransaction, type IdempotencyDatabase, type TransactionOf } from './db.js';
import { IdempotencyInFlightError, IdempotencySerializationError } from './errors.js';
import { resolveOptions, type IdempotencyOptions, type ResolvedOptions } from './options.js';
import { serializeResult } from './result.js';
import { lookupStored, readKey, replayOf, type IdempotentOutcome, type KeyRow } from './stored-key.js';
import { storeResult } from './store.js';

/**
 * Runs `fn` at most once per `(scope, key)` while the key lives, and returns
 * its result; a duplicate gets the stored result without running `fn`.
 *
 * Given a transaction, the claim, `fn` and the stored result share one
 * savepoint inside it, and commit with it. Given a database, it opens the
 * transaction itself.
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
  for (let attempt = 0; ; attempt++) {
    try {
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
  options?: Pick<IdempotencyOptions, 'scope' | 'fingerprint' | 'schema'>,
): Promise<IdempotentOutcome<T> | undefined> {
  return lookupStored<T>(db, resolveOptions(key, options));
}

async function claimRunStore<T>(
  tx: IdempotencyDatabase,
  o: ResolvedOptions,
  fn: (tx: IdempotencyDatabase) => Promise<T>,
): Promise<IdempotentOutcome<T>> {
  const live = await acquire(tx, o);
  if (live) return replayOf<T>(live, o);
  const json = serializeResult(await fn(tx), o.maxResultBytes);
  return { value: await storeResult<T>(tx, o, json), replayed: false };
}

// Rounds of claim / read / reclaim before giving up: each lost round means
// another transaction changed the row in between (a reclaim, a sweep).
const ACQUIRE_ROUNDS = 3;

/** Claims the key, or takes over its dead row: resolves undefined. A live row stands: resolves it. */
async function acquire(tx: IdempotencyDatabase, o: ResolvedOptions): Promise<KeyRow | undefined> {
  for (let round = 0; round < ACQUIRE_ROUNDS; round++) {
    if (await claimKey(tx, o)) return undefined;
    const row = await readKey(tx, o);
    if (row.status === null) continue; // swept between our two statements: claim again
    if (!row.reclaimable) return row;
    if (await reclaimKey(tx, o)) return undefined;
  }
  throw new IdempotencyInFlightError(`idempotency key ${JSON.stringify(o.key)} kept changing under concurrent reclaims; retry`);
}
