import { entityKind, type SQL, type SQLWrapper } from 'drizzle-orm';
import type { PgTransactionConfig } from 'drizzle-orm/pg-core';
import { executeNamed } from './named-statement.js';
import { redact } from './redacted-error.js';

/**
 * What the library needs of a Drizzle PostgreSQL database or transaction, with
 * any driver (node-postgres, postgres.js, PGlite, Neon, …): raw SQL and nested
 * transactions (a savepoint when called on a transaction).
 */
export interface IdempotencyDatabase {
  execute(query: SQLWrapper): PromiseLike<unknown>;
  transaction<T>(fn: (tx: IdempotencyDatabase) => Promise<T>, config?: PgTransactionConfig): Promise<T>;
}

/** The transaction type a database hands to `transaction()` callbacks. */
export type TransactionOf<TDb extends IdempotencyDatabase> = Parameters<Parameters<TDb['transaction']>[0]>[0];

/**
 * The one connection `db` runs every transaction on, when it is a database
 * over a single connection (drizzle over a lone node-postgres `Client`, or
 * PGlite); undefined for pools and everything else.
 */
export function singleConnectionOf(db: IdempotencyDatabase): object | undefined {
  const session = (db as { session?: { client?: unknown; constructor: unknown } }).session;
  const kind = (session?.constructor as { [entityKind]?: string } | undefined)?.[entityKind];
  const client = session?.client;
  if (typeof client !== 'object' || client === null) return undefined;
  if (kind === 'PgliteSession') return client;
  // A node-postgres Pool has `options` and `totalCount`; a lone Client has neither.
  if (kind === 'NodePgSession' && !('totalCount' in client)) return client;
  return undefined;
}

// drizzle-orm 0.44/0.45 call the base class of PostgreSQL transactions
// PgTransaction; 1.0 renamed it PgAsyncTransaction and no longer exports the
// old one. Classes are matched by their drizzle entity name, as drizzle's own
// `is()` does, so that neither name has to be imported.
const TRANSACTION_KINDS = new Set(['PgTransaction', 'PgAsyncTransaction']);

/** Whether `db` is already a transaction (then we nest a savepoint in it). */
export function isTransaction(db: IdempotencyDatabase): boolean {
  for (let proto: unknown = Object.getPrototypeOf(db); proto; proto = Object.getPrototypeOf(proto)) {
    const kind = (proto as { constructor?: { [entityKind]?: unknown } }).constructor?.[entityKind];
    if (typeof kind === 'string' && TRANSACTION_KINDS.has(kind)) return true;
  }
  return false;
}

/**
 * What the library's own statements run on: a database, a transaction, or the
 * pipelined connection of `pipelined-transaction.ts`, which names statements itself.
 */
export interface SqlRunner {
  execute(query: SQL): PromiseLike<unknown>;
  executeNamed?(query: SQL): PromiseLike<unknown>;
}

/**
 * Runs `query` and returns its rows, whichever driver answered; `named` sends
 * it as a named prepared statement where the driver has them. A failure comes
 * back redacted (see `redact`): no parameters, no row data.
 */
export async function queryRows<Row>(db: SqlRunner, query: SQL, named = false): Promise<Row[]> {
  let result: unknown;
  try {
    result = await (!named ? db.execute(query) : db.executeNamed ? db.executeNamed(query) : executeNamed(db, query));
  } catch (error) {
    // Our statements carry the fingerprint and the response as parameters.
    throw redact(error);
  }
  // node-postgres and PGlite answer { rows }, postgres.js an array of rows.
  if (Array.isArray(result)) return withOurColumnNames(result as Record<string, unknown>[]) as Row[];
  return ((result as { rows?: Row[] }).rows ?? []) as Row[];
}

// Every column the library's statements name is lower snake_case.
const OUR_COLUMN = /^[a-z0-9_]+$/;
const renamed = new Map<string, string>();

/**
 * postgres.js renames the columns of every result when its client was created
 * with a column transform (`postgres.camel`, `pascal`, `kebab`): `expires_ms`
 * arrives as `expiresMs`, `ExpiresMs` or `expires-ms`. The library's own
 * columns are all lower snake_case, so such a name is turned back into it.
 */
function withOurColumnNames(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  const first = rows[0];
  if (first === undefined || Object.keys(first).every((name) => OUR_COLUMN.test(name))) return rows;
  return rows.map((row) => Object.fromEntries(Object.entries(row).map(([name, value]) => [snakeCase(name), value])));
}

function snakeCase(name: string): string {
  let snake = renamed.get(name);
  if (snake === undefined) {
    snake = name
      .replace(/-/g, '_')
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .toLowerCase();
    renamed.set(name, snake);
  }
  return snake;
}
