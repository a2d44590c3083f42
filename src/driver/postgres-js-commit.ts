import { entityKind } from 'drizzle-orm';
import type { PgTransactionConfig } from 'drizzle-orm/pg-core';
import { isTransaction, type IdempotencyDatabase } from './database.js';

// The parts of postgres.js used here, typed by shape: `postgres` is an optional peer.
interface PostgresJsQuery extends PromiseLike<{ command?: string }> {
  execute(): unknown;
}
interface PostgresJsSql {
  unsafe(text: string): PostgresJsQuery;
  options?: { prepare?: unknown };
}

function postgresJsClientOf(db: object): PostgresJsSql | undefined {
  const session = (db as { session?: { client?: unknown; constructor: unknown } }).session;
  const kind = (session?.constructor as { [entityKind]?: string } | undefined)?.[entityKind];
  return kind === 'PostgresJsSession' ? (session!.client as PostgresJsSql) : undefined;
}

/**
 * Whether `db` is drizzle's postgres.js database with `prepare` on (postgres.js'
 * default). postgres.js 3.4 then sends the COMMIT of `begin()` as a named
 * prepared statement, cached per client connection. Behind a transaction
 * pooler that keeps no prepared statements (PgBouncer before 1.21, Supavisor),
 * the next transaction of that connection can land on a server connection that
 * never prepared it: the server answers 26000 and aborts the transaction,
 * postgres.js sends COMMIT again, and Postgres turns a COMMIT of an aborted
 * transaction into a ROLLBACK, without an error (porsager/postgres#1212).
 */
function commitsByName(db: IdempotencyDatabase): boolean {
  // A transaction's client (postgres.js' scoped `sql`) has no options: its
  // transaction() is a savepoint, and the COMMIT is the caller's, never ours.
  if (isTransaction(db)) return false;
  const options = postgresJsClientOf(db)?.options;
  return options !== undefined && options.prepare !== false;
}

/**
 * Ends the transaction `tx` of postgres.js with a COMMIT of ours, on the simple
 * protocol (no statement name), and checks that the server answered COMMIT.
 * An empty transaction goes out right behind it, in the same round trip, for
 * the COMMIT postgres.js sends after `fn` to end (without it, the server would
 * warn "there is no transaction in progress").
 */
async function commitOnSimpleProtocol(tx: IdempotencyDatabase): Promise<void> {
  const client = postgresJsClientOf(tx);
  if (!client) return;
  const committed = client.unsafe('commit');
  const begun = client.unsafe('begin');
  committed.execute();
  begun.execute();
  // If BEGIN fails, the connection is gone: postgres.js' own COMMIT then fails and says so.
  const [result] = await Promise.allSettled([committed, begun]);
  if (result.status === 'rejected') throw result.reason;
  if (result.value.command !== 'COMMIT') {
    throw new Error(`COMMIT was answered with ${String(result.value.command)}: the transaction had been aborted, and rolled back`);
  }
}

/**
 * `db.transaction(body, config)`, except that on postgres.js with `prepare` on
 * the library sends the COMMIT itself (see `commitsByName`): a transaction
 * that resolves has committed, behind any pooler. Costs that driver one round
 * trip (the empty transaction's COMMIT).
 *
 * @example
 * await transactionThatCommits(db, undefined, (tx) => claimRunStore(tx));
 */
export function transactionThatCommits<R>(
  db: IdempotencyDatabase,
  config: PgTransactionConfig | undefined,
  body: (tx: IdempotencyDatabase) => Promise<R>,
): Promise<R> {
  if (!commitsByName(db)) return db.transaction(body, config);
  return db.transaction(async (tx) => {
    const result = await body(tx);
    await commitOnSimpleProtocol(tx);
    return result;
  }, config);
}
