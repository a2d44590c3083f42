import { AsyncLocalStorage } from 'node:async_hooks';
import { IdempotencyInFlightError, IdempotencyReentrantCallError } from '../shared/errors.js';
import type { ResolvedOptions } from './options.js';
import { singleConnectionOf, type IdempotencyDatabase } from '../driver/database.js';

// Calls that could step on each other inside this process take turns here,
// before they touch the database:
// - calls on one transaction: Postgres savepoints nest, they cannot
//   interleave, and two claims of one key in one transaction see each other's
//   uncommitted row; so they run one at a time, nested calls inside the turn
//   of the call around them;
// - calls for one key that each open their own transaction: a duplicate waits
//   here, holding no connection, instead of holding one while it waits on the
//   key's row lock (a storm of one key would starve the pool).

/** A lock whose holders run one after another, in arrival order. */
interface Turns {
  /** Resolves with a release function once it is the caller's turn; rejects if `signal` aborts first. */
  take(signal?: AbortSignal): Promise<() => void>;
  /** Whether someone holds or waits for a turn. */
  busy(): boolean;
}

function createTurns(): Turns {
  let holder = false;
  const queue: (() => void)[] = [];
  const release = () => {
    const next = queue.shift();
    if (next) next();
    else holder = false;
  };
  return {
    busy: () => holder,
    take(signal) {
      if (!holder) {
        holder = true;
        return Promise.resolve(once(release));
      }
      return new Promise((resolve, reject) => {
        const go = () => {
          signal?.removeEventListener('abort', abort);
          resolve(once(release));
        };
        const abort = () => {
          queue.splice(queue.indexOf(go), 1);
          reject(signal!.reason);
        };
        queue.push(go);
        signal?.addEventListener('abort', abort, { once: true });
      });
    },
  };
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (!done) {
      done = true;
      fn();
    }
  };
}

/** A call whose `fn` is running: what calls made inside it must know. */
interface RunningCall {
  /** The key's identity: schema, scope and key. */
  id: string;
  /** The connection its transaction is on. */
  connection: object;
  /** Turns for the calls made inside `fn` on the same connection. */
  inner: Turns;
  /** Set once `fn` has settled: timers and listeners `fn` left behind still
   * carry this entry, and must not be taken for code running inside it. */
  done: boolean;
}

/** An entry for a single-connection database whose own transaction is open. */
interface BusyConnection {
  connection: object;
  done: boolean;
}

const running = new AsyncLocalStorage<readonly RunningCall[]>();
// Single-connection databases whose own transaction is open around the running code.
const busyConnections = new AsyncLocalStorage<readonly BusyConnection[]>();

/**
 * Runs `body` outside every call of this library: what telemetry listeners
 * run in, so that a listener calling the library makes an ordinary call, not
 * one taken for a call made inside the call it listens to.
 */
export function outsideCalls(body: () => void): void {
  running.exit(() => busyConnections.exit(body));
}

/** The calls whose `fn` runs around the current code, outermost first. */
const callsAround = (): RunningCall[] => running.getStore()?.filter((call) => !call.done) ?? [];

/** Runs `body` with `entry` pushed on `storage`'s list, marking it done when `body` settles. */
async function within<E extends { done: boolean }, R>(storage: AsyncLocalStorage<readonly E[]>, entry: E, body: () => Promise<R>): Promise<R> {
  try {
    return await storage.run([...(storage.getStore() ?? []), entry], body);
  } finally {
    entry.done = true;
  }
}

/** One string per key: two calls with equal ids are calls for the same key. */
export const keyId = (o: ResolvedOptions) => JSON.stringify([o.schema ?? null, o.scope, o.key]);

/**
 * What a transaction or database object runs on, as far as drizzle tells: the
 * driver's client (a pool, a pooled connection, a postgres.js reserved
 * connection), so that different drizzle objects over one connection agree.
 */
export function connectionOf(db: object): object {
  const client = (db as { session?: { client?: unknown } }).session?.client;
  return typeof client === 'object' && client !== null ? client : db;
}

/**
 * Throws `IDEMPOTENCY_REENTRANT_CALL` when a call for the same key is running
 * `fn` around this one: waiting for it would wait forever, and running `fn`
 * again would be a second effect.
 */
export function refuseReentrantCall(o: ResolvedOptions): void {
  const id = keyId(o);
  if (callsAround().some((call) => call.id === id)) {
    throw new IdempotencyReentrantCallError(
      `idempotency key ${JSON.stringify(o.key)} is already being run by a call around this one; a key cannot be used inside its own fn`,
    );
  }
}

/**
 * Runs `body`, which opens a transaction on a database of one connection
 * (a lone pg.Client, PGlite), in its turn on that connection. A call made on
 * that database inside `fn` would need a second connection: it is refused
 * with `IDEMPOTENCY_REENTRANT_CALL` (PGlite would wait for itself forever, a
 * pg.Client would mix the two transactions).
 */
export function onSingleConnection<R>(connection: object, o: ResolvedOptions, body: () => Promise<R>): Promise<R> {
  if (insideTransactionOn(connection)) {
    throw new IdempotencyReentrantCallError(
      `idempotency key ${JSON.stringify(o.key)}: this database has one connection, and a transaction is already open on it around this call; pass the transaction fn was given instead of the database`,
    );
  }
  return inTransactionTurn(connection, () => within(busyConnections, { connection, done: false }, body));
}

/** Whether the current code runs inside a transaction of the library's on `connection` (a database of one connection). */
function insideTransactionOn(connection: object): boolean {
  return (
    busyConnections.getStore()?.some((busy) => busy.connection === connection && !busy.done) ||
    callsAround().some((call) => call.connection === connection)
  );
}

/**
 * Throws `IDEMPOTENCY_REENTRANT_CALL` when `db` is a database of one
 * connection (PGlite, a lone pg.Client) and a transaction of the library is
 * open on it around this code (`what` is called inside `fn`): PGlite would make
 * the call wait for that transaction forever, and a pg.Client would run it
 * inside that transaction (its COMMIT or ROLLBACK would end that transaction midway).
 *
 * @example
 * refuseInsideTransactionOn(db, 'lookupReplay'); // before its SELECT
 */
export function refuseInsideTransactionOn(db: IdempotencyDatabase, what: string): void {
  const connection = singleConnectionOf(db);
  if (connection === undefined || !insideTransactionOn(connection)) return;
  throw new IdempotencyReentrantCallError(
    `${what} on this database inside fn: it has one connection, and the transaction around this call holds it; call it outside fn${what === 'lookupReplay' ? ", or pass fn's transaction" : ''}`,
  );
}

const connectionTurns = new WeakMap<object, Turns>();

/**
 * Runs `body` in this call's turn on `connection`: after every earlier call on
 * the same transaction has finished, or inside the turn of the call whose `fn`
 * made this one.
 */
export async function inTransactionTurn<R>(connection: object, body: () => Promise<R>): Promise<R> {
  const around = callsAround().findLast((call) => call.connection === connection);
  let turns = around?.inner ?? connectionTurns.get(connection);
  if (!turns) connectionTurns.set(connection, (turns = createTurns()));
  const release = await turns.take();
  try {
    return await body();
  } finally {
    release();
  }
}

/** Runs `fn(tx)` known as the running call for `o`'s key on the connection of `tx`. */
export function asRunningCall<T extends object, R>(o: ResolvedOptions, tx: T, fn: (tx: T) => Promise<R>): Promise<R> {
  return within(running, { id: keyId(o), connection: connectionOf(tx), inner: createTurns(), done: false }, () => fn(tx));
}

const keyTurns = new WeakMap<object, Map<string, Turns>>();
let waitingForKeys = 0;

/** How many calls of this process wait for another call for their key (what tests watch for). */
export const callsWaitingForTheirKey = () => waitingForKeys;

/**
 * Runs `body` in this call's turn for its key among the calls of this process
 * that open their own transaction on `database`: one at a time, so that
 * duplicates hold no connection while they wait. `body` is told whether it
 * waited for another call (then the key most likely completed: look it up
 * before claiming) and how much of `waitTimeout` is left.
 *
 * When another call holds the key's turn, `whenBusy` (a lookup) may answer
 * first. Under 'reject', a key another call of this process holds fails at
 * once; under 'wait', the wait here counts against `waitTimeout`, and `body`
 * gets what is left of it.
 */
export async function inKeyTurn<R>(
  database: object,
  o: ResolvedOptions,
  body: (waited: boolean, remainingMs: number) => Promise<R>,
  whenBusy?: () => Promise<R | undefined>,
): Promise<R> {
  const id = keyId(o);
  if (whenBusy && keyTurns.get(database)?.get(id)?.busy()) {
    // The call ahead has most likely completed the key, or is about to: a
    // completed key needs no turn, so replays of it never queue.
    const early = await whenBusy();
    if (early !== undefined) return early;
  }
  let byKey = keyTurns.get(database);
  if (!byKey) keyTurns.set(database, (byKey = new Map()));
  let turns = byKey.get(id);
  if (!turns) byKey.set(id, (turns = createTurns()));
  if (turns.busy() && o.onInFlight === 'reject') {
    throw new IdempotencyInFlightError(`idempotency key ${JSON.stringify(o.key)} is in flight in this process`);
  }
  const started = performance.now();
  const waited = turns.busy();
  const timeout = waited ? AbortSignal.timeout(o.lockTimeoutMs) : undefined;
  let release: () => void;
  if (waited) waitingForKeys++;
  try {
    release = await turns.take(timeout);
  } catch (error) {
    forget(byKey, id, turns);
    throw new IdempotencyInFlightError(
      `idempotency key ${JSON.stringify(o.key)} was still in flight after waiting ${o.lockTimeoutMs} ms`,
      { cause: error },
    );
  } finally {
    if (waited) waitingForKeys--;
  }
  try {
    return await body(waited, Math.max(1, Math.round(o.lockTimeoutMs - (performance.now() - started))));
  } finally {
    release();
    forget(byKey, id, turns);
  }
}

/** Drops a key's turns once nobody holds or waits for them, so the map stays small. */
function forget(byKey: Map<string, Turns>, id: string, turns: Turns): void {
  if (!turns.busy() && byKey.get(id) === turns) byKey.delete(id);
}
