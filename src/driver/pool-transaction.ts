import { entityKind, type SQL } from 'drizzle-orm';
import type { PgTransactionConfig } from 'drizzle-orm/pg-core';
import type { IdempotencyDatabase } from './database.js';
import type { TextRunner } from './statement.js';
import { statementName } from './named-statement.js';
import { beginStatement } from './transaction-config.js';
import { whileListeningIn } from './client-errors.js';
import { transactionThatCommits } from './postgres-js-commit.js';
import { FusedQueryLost, mayGoAhead, queryClassOf, sendFused, type FusableClient } from './fused-query.js';

// The parts of node-postgres and of drizzle's node-postgres session used here,
// typed by shape: `pg` is an optional peer, so nothing here may import it.
interface PgClient {
  query(config: { text: string; values?: unknown[]; name?: string }): Promise<unknown>;
  release(error?: Error | boolean): void;
  on(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
  connection?: { stream?: { cork?(): void; uncork?(): void } };
  /** node-postgres 8.23+: whether queries are sent without waiting for the previous answer. */
  pipeline?: boolean;
}
interface PgPool {
  options?: { pipeline?: unknown };
  query(config: { text: string; values?: unknown[]; name?: string }): Promise<unknown>;
  connect(callback: (error: Error | undefined, client: PgClient | undefined) => void): void;
  on(event: 'error', listener: (error: Error) => void): unknown;
}
interface Dialect {
  sqlToQuery(sql: SQL): { sql: string; params: unknown[] };
}
interface NodePgSessionParts {
  client: unknown;
  dialect: Dialect;
  /** drizzle-orm 0.44/0.45: the relational schema, third argument of the session and transaction constructors. */
  schema?: unknown;
  /** drizzle-orm 1.0: the relations, in the same place. */
  relations?: unknown;
  options: unknown;
}

// The session and transaction constructors as both drizzle-orm 0.44+ and 1.0
// take them (1.0 adds optional trailing arguments; its declarations make them required).
type SessionConstructor = new (client: unknown, dialect: unknown, schemaOrRelations: unknown, options: unknown) => object;
type TransactionConstructor = new (dialect: unknown, session: object, schemaOrRelations: unknown) => IdempotencyDatabase;

/** A node-postgres database over a `pg.Pool`. */
export interface PoolSource {
  pool: PgPool;
  session: NodePgSessionParts;
}

/** What a pool transaction offers the code that runs in it. */
export interface Pipeline {
  /** The transaction `fn` gets: drizzle's own, on the checked-out connection. */
  tx: IdempotencyDatabase;
  /** Whether statements go out without waiting for the answers before them (pipeline mode). */
  pipelined: boolean;
  /** Runs the library's statements; each is queued on the connection the moment it is called. */
  runner: TextRunner;
  /** Queues BEGIN: the statement queued next travels in the same round trip. */
  begin(): Promise<unknown>;
  /** Queues COMMIT behind what was queued before it. */
  commit(): Promise<unknown>;
  /** Ends the transaction with ROLLBACK; if that fails, the connection is not reused. Never rejects. */
  rollback(): Promise<void>;
  /** `runner` for the statement that opens the transaction: BEGIN goes out ahead of it, under its Sync where the client allows. */
  opening: TextRunner;
  /**
   * Runs `send`, whose one statement closes the transaction: COMMIT goes out
   * behind it, under its Sync where the client allows. When the statement
   * fails, COMMIT does not run and the transaction is rolled back. Settles
   * with the outcome of each.
   */
  close<R>(send: (runner: TextRunner) => Promise<R>): Promise<[PromiseSettledResult<R>, PromiseSettledResult<unknown>]>;
  /** Runs `send`, which queues statements, holding them back until it returns so they leave in one write. */
  together<T>(send: () => T): T;
}

const watchedPools = new WeakSet<object>();
// Pools on which a fused query went out without its BEGIN or COMMIT (see FusedQueryLost).
const fusionLost = new WeakSet<object>();
// Clients on which a fused COMMIT came back whole.
const fusedWhole = new WeakSet<object>();

/**
 * The pool the library checks connections out of itself, when `db` is
 * drizzle's node-postgres database over a `pg.Pool`; undefined for anything
 * else (a lone client, another driver, a transaction).
 *
 * The library then checks connections out itself, so that it can listen for
 * their errors while it holds them (node-postgres emits a lost connection as
 * an 'error' event on the client, which kills the process when nobody
 * listens), and, on a pool created with `pipeline: true`, send BEGIN with the
 * claim and the store with COMMIT. It also listens on the pool itself: an
 * idle connection that dies is dropped by the pool, and must not take the
 * process down with it.
 */
export function checkoutPoolOf(db: IdempotencyDatabase): PoolSource | undefined {
  const session = (db as { session?: NodePgSessionParts }).session;
  if (!session || (session.constructor as { [entityKind]?: string })[entityKind] !== 'NodePgSession') return undefined;
  const pool = session.client as Partial<PgPool> | undefined;
  // A pool has `connect` and `options`; a lone client (its owner's to manage) has no `options`.
  if (!pool || typeof pool.connect !== 'function' || typeof pool.options !== 'object' || typeof pool.on !== 'function') return undefined;
  if (!watchedPools.has(pool)) {
    watchedPools.add(pool);
    pool.on('error', ignoreIdleConnectionError);
  }
  return { pool: pool as PgPool, session };
}

// The pool has already removed the dead idle client; the next checkout gets a new one.
function ignoreIdleConnectionError(): void {}

/**
 * A client of the pool, with `onError` listening on it from the moment the
 * pool hands it over. While we hold it, a dead connection is an 'error' event
 * on the client, which would crash the process for want of a listener. The
 * callback form matters: the pool hands a client to a waiting caller while it
 * is still parsing that connection's input, and the server's "terminating
 * connection" can be the very next message, before a promise would resolve.
 */
function checkOut(pool: PgPool, onError: (error: Error) => void): Promise<PgClient> {
  return new Promise((resolve, reject) => {
    pool.connect((error, client) => {
      if (error || !client) return reject(error ?? new Error('the pool gave no client'));
      client.on('error', onError);
      resolve(client);
    });
  });
}

let nodePg: Promise<typeof import('drizzle-orm/node-postgres')> | undefined;

/**
 * Runs `body` in a transaction on one connection from the pool. Unlike
 * `db.transaction`, BEGIN and COMMIT are queued without waiting, so on a
 * pipelined pool they share round trips with the statements queued next to
 * them (on any other pool, node-postgres sends them one after another). If
 * `body` throws while the transaction is open, it is rolled back; if it
 * returns with the transaction open, it is committed.
 */
export async function inPoolTransaction<R>(
  source: PoolSource,
  config: PgTransactionConfig | undefined,
  body: (p: Pipeline) => Promise<R>,
): Promise<R> {
  const begin = beginStatement(config);
  nodePg ??= import('drizzle-orm/node-postgres');
  const nodePgClasses = await nodePg;
  const NodePgSession = nodePgClasses.NodePgSession as unknown as SessionConstructor;
  const NodePgTransaction = nodePgClasses.NodePgTransaction as unknown as TransactionConstructor;
  const { dialect, options } = source.session;
  const schema = 'relations' in source.session ? source.session.relations : source.session.schema;
  // Set when this connection must not go back to the pool: the server ended it
  // (node-postgres notices only a tick later), or it could not roll back.
  let broken: Error | undefined;
  const markBroken = (error: unknown) => {
    broken ??= error instanceof Error ? error : new Error(String(error));
  };
  const client = await checkOut(source.pool, markBroken);
  // Pipeline mode for as long as we hold the client, unless the pool says
  // `pipeline: false` (the opt-out): BEGIN then travels with the claim and the
  // store with COMMIT. It is a protocol feature (no server state), so safe
  // behind any pooler; the client goes back in the mode it came in.
  const pipelining = client.pipeline === false && source.pool.options?.pipeline !== false;
  if (pipelining) client.pipeline = true;
  const session = new NodePgSession(client, dialect, schema, options);
  const tx = new NodePgTransaction(dialect, session, schema);

  const queryText = (text: string, values: unknown[], name: string | undefined) => client.query(name ? { name, text, values } : { text, values });
  const send = (query: SQL, named: boolean) => {
    const { sql: text, params } = dialect.sqlToQuery(query);
    return queryText(text, params, named ? statementName(text) : undefined);
  };
  let open = false;
  const runner: TextRunner = { execute: (query) => send(query, false), executeNamed: (query) => send(query, true), queryText, ...preparedStatementsOf(source.pool) };
  const Query = fusionLost.has(source.pool) ? undefined : queryClassOf(client);
  // A fused query that went out without what travels with it: this pool sends them apart from now on.
  const noteLost = (error: unknown) => {
    if (error instanceof FusedQueryLost) fusionLost.add(source.pool);
  };
  const closed = (committed: Promise<unknown>) => {
    // Whatever COMMIT answers, the transaction is over; if it failed, the
    // connection may be on its way down, so it is not reused.
    committed.catch(markBroken);
    return committed;
  };
  const pipeline: Pipeline = {
    tx,
    pipelined: client.pipeline === true,
    runner,
    begin() {
      open = true;
      return client.query({ text: begin });
    },
    commit() {
      open = false;
      return closed(client.query({ text: 'commit' }));
    },
    async rollback() {
      open = false;
      await client.query({ text: 'rollback' }).catch(markBroken);
    },
    opening: {
      ...runner,
      queryText(text, values, name) {
        // BEGIN goes ahead of the claim only on a client whose fused COMMIT came back whole: a lost
        // BEGIN is a claim that committed on its own, a lost COMMIT only a store to roll back.
        if (!Query || !fusedWhole.has(client) || !mayGoAhead(client, name)) {
          const [begun, result] = pipeline.together(() => [pipeline.begin(), queryText(text, values, name)] as const);
          return both(begun, result);
        }
        open = true;
        const { statement } = sendFused(client as unknown as FusableClient, Query, { text, values, name }, { before: begin });
        statement.catch(noteLost);
        return statement;
      },
    },
    async close(send) {
      let committed: Promise<unknown> | undefined;
      const closing: TextRunner = {
        ...runner,
        queryText(text, values, name) {
          if (!Query) {
            const result = queryText(text, values, name);
            committed = pipeline.commit();
            return result;
          }
          open = false;
          const answer = sendFused(client as unknown as FusableClient, Query, { text, values, name }, { after: 'commit' });
          // The statement failed (or went out alone): COMMIT was skipped, and the transaction is still open.
          answer.statement.catch((error: unknown) => {
            open = true;
            noteLost(error);
          });
          answer.after.then(() => fusedWhole.add(client), () => {});
          // COMMIT itself failed: the connection may be on its way down, so it is not reused.
          answer.after.catch((error: unknown) => answer.statement.then(() => markBroken(error), () => {}));
          committed = answer.after;
          return answer.statement;
        },
      };
      const result = pipeline.together(() => send(closing));
      const [stored] = await Promise.allSettled([result]);
      if (!committed) return [stored, { status: 'rejected', reason: new Error('the statement that closes the transaction was never sent') }];
      return [stored, (await Promise.allSettled([committed]))[0]];
    },
    together(send) {
      // node-postgres writes each query with its own system call; corking the
      // socket around several makes one, which is half of what a statement
      // costs this process. Cork and uncork nest, so the driver's own pairs
      // inside do not flush early.
      const stream = client.connection?.stream;
      stream?.cork?.();
      try {
        return send();
      } finally {
        stream?.uncork?.();
      }
    },
  };
  try {
    const result = await body(pipeline);
    if (open) await pipeline.commit();
    return result;
  } catch (error) {
    if (open) await pipeline.rollback();
    throw error;
  } finally {
    // The transaction is over: whatever fn's tx is still asked to run fails
    // (it would run outside the transaction, on a connection that may be
    // someone else's by then).
    (session as unknown as { client: unknown }).client = TRANSACTION_OVER;
    const giveBack = () => {
      if (pipelining && !broken) client.pipeline = false;
      client.removeListener('error', markBroken);
      client.release(broken);
    };
    // Our queries have all been answered (each awaited, COMMIT or ROLLBACK
    // last); fn's may not be (an await it forgot). The connection goes back
    // only once they are, in the mode it came in: else the next user would
    // get their answers. The caller does not wait for that.
    if (broken || !hasQueriesOutstanding(client)) giveBack();
    else giveBackWhenDrained(client, giveBack, markBroken);
  }
}

/** The second result; else the first one's error (the second often just follows from it). */
async function both<B>(first: Promise<unknown>, second: Promise<B>): Promise<B> {
  const [a, b] = await Promise.allSettled([first, second]);
  if (a.status === 'rejected') throw a.reason;
  if (b.status === 'rejected') throw b.reason;
  return b.value;
}

// How long fn's forgotten queries may keep the connection before it is closed instead.
const DRAIN_LIMIT_MS = 30_000;

function giveBackWhenDrained(client: PgClient, giveBack: () => void, markBroken: (error: unknown) => void): void {
  const events = client as unknown as { once(event: 'drain', listener: () => void): unknown; removeListener(event: 'drain', listener: () => void): unknown };
  const timer = setTimeout(() => {
    events.removeListener('drain', drained);
    markBroken(new Error(`queries of fn were still running ${DRAIN_LIMIT_MS} ms after its transaction ended`));
    giveBack();
  }, DRAIN_LIMIT_MS);
  timer.unref();
  const drained = () => {
    clearTimeout(timer);
    giveBack();
  };
  events.once('drain', drained);
}

/** Whether node-postgres still has queries of this client sent or queued. */
function hasQueriesOutstanding(client: PgClient): boolean {
  const state = client as unknown as { _activeQuery?: unknown; _sentQueryQueue?: unknown[]; _queryQueue?: unknown[] };
  return Boolean(state._activeQuery) || (state._sentQueryQueue?.length ?? 0) > 0 || (state._queryQueue?.length ?? 0) > 0;
}

/** What fn's transaction runs on once the transaction is over. */
const TRANSACTION_OVER = {
  query: () =>
    Promise.reject(new Error('this transaction is over: a query of fn ran after withIdempotency returned (an await forgotten inside fn?)')),
};

/**
 * `db.transaction(fn, config)`, except on a node-postgres pool, where the
 * library checks the connection out itself and listens for its errors while
 * it holds it (see `checkoutPoolOf`): a connection that dies then fails `fn`
 * instead of the process.
 *
 * @example
 * await inTransaction(db, undefined, (tx) => tx.insert(charges).values(row));
 */
export function inTransaction<R>(
  db: IdempotencyDatabase,
  config: PgTransactionConfig | undefined,
  fn: (tx: IdempotencyDatabase) => Promise<R>,
): Promise<R> {
  const pool = checkoutPoolOf(db);
  if (!pool) return transactionThatCommits(db, config, (tx) => whileListeningIn(tx, () => fn(tx)));
  return inPoolTransaction(pool, config, async (p) => {
    await p.begin();
    return fn(p.tx);
  });
}

/**
 * The library's statements outside a transaction (the lookup) straight on the
 * pool: their text is built once per shape, not per call.
 *
 * @example
 * await lookupStored(poolRunner(pool, db), o);
 */
export function poolRunner(source: PoolSource, db: IdempotencyDatabase): TextRunner {
  return {
    execute: (query) => db.execute(query),
    queryText: (text, values, name) => source.pool.query(name ? { name, text, values } : { text, values }),
    ...preparedStatementsOf(source.pool),
  };
}

// Pools whose server refused a named statement: unnamed statements only.
const withoutPreparedStatements = new WeakSet<object>();

function preparedStatementsOf(pool: object): Pick<TextRunner, 'canPrepare' | 'refusePrepared'> {
  return {
    canPrepare: () => !withoutPreparedStatements.has(pool),
    refusePrepared: () => void withoutPreparedStatements.add(pool),
  };
}

/**
 * On a node-postgres pool: from now on, an idle connection the server ends is
 * dropped by the pool without taking the process down (see `checkoutPoolOf`).
 * Every entry point of the library calls it; a no-op for anything else.
 *
 * @example
 * listenForIdleErrors(db); // then sweep, migrate, …
 */
export function listenForIdleErrors(db: IdempotencyDatabase): void {
  checkoutPoolOf(db);
}
