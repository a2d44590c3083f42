import { fillPlaceholders, sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { queryRows, type SqlRunner } from './database.js';
import { statementName } from './named-statement.js';
import { redact } from './redacted-error.js';
import { FusedQueryLost } from './fused-query.js';

/**
 * One of the library's own statements (claim, read, store, lookup): its SQL
 * written once, with a named slot for each value, so that its text can be
 * built once per shape instead of on every call.
 */
export interface Statement {
  /** Equal shapes, equal texts: the statement and whatever changes its text (schema, policy). */
  shape: string;
  values: Readonly<Record<string, unknown>>;
  /** The SQL, with `v(name)` where each value goes. */
  build(v: (name: string) => unknown): SQL;
}

/** A runner that takes text and parameters straight to the driver (a node-postgres pool the library uses itself). */
export interface TextRunner extends SqlRunner {
  queryText(text: string, params: unknown[], name: string | undefined): Promise<unknown>;
  /** Whether named statements still work on this pool (see `prepare`). */
  canPrepare(): boolean;
  /** The server refused a named statement: this pool uses unnamed ones from now on. */
  refusePrepared(): void;
}

/**
 * What `prepare` asks for: named statements 'always', never, or 'auto' (named
 * on a pool the library uses itself, unless its server refused one).
 */
export type PrepareMode = 'always' | 'auto' | 'never';

/**
 * The server (or a pooler in front of it) refused a named statement:
 * "prepared statement does not exist" or "already exists", as PgBouncer in
 * transaction mode answers when it keeps no prepared statements. The pool has
 * been switched to unnamed statements; the call can run again.
 */
export class PreparedStatementsRefused extends Error {
  override name = 'PreparedStatementsRefused';
}

// 26000: prepared statement does not exist; 42P05: it exists already.
const REFUSED = new Set(['26000', '42P05']);

const dialect = new PgDialect();
const texts = new Map<string, { text: string; params: unknown[] }>();

/** Text and parameters of `s`; the text is built by drizzle once per shape. */
export function compile(s: Statement): { text: string; params: unknown[] } {
  let built = texts.get(s.shape);
  if (!built) {
    const query = dialect.sqlToQuery(s.build((name) => sql.placeholder(name)));
    built = { text: query.sql, params: query.params };
    texts.set(s.shape, built);
  }
  return { text: built.text, params: fillPlaceholders(built.params, s.values as Record<string, unknown>) };
}

/**
 * Runs `s` and returns its rows: as text and parameters where the runner
 * takes them (one text per shape, no SQL built per call), else as drizzle
 * SQL through the database or transaction. `prepare`: whether as a named
 * prepared statement. Failures come back redacted; a named statement the
 * server refused under 'auto' comes back as `PreparedStatementsRefused`.
 *
 * @example
 * const [row] = await runStatement<KeyRow>(tx, statement, 'auto');
 */
export async function runStatement<Row>(db: SqlRunner | TextRunner, s: Statement, prepare: PrepareMode): Promise<Row[]> {
  if (!('queryText' in db)) return queryRows<Row>(db, s.build((name) => s.values[name]), prepare === 'always');
  const { text, params } = compile(s);
  const named = prepare === 'always' || (prepare === 'auto' && db.canPrepare());
  let result: unknown;
  try {
    result = await db.queryText(text, params, named ? statementName(text) : undefined);
  } catch (error) {
    // Not the server's answer: the caller sends again, without fusing.
    if (error instanceof FusedQueryLost) throw error;
    const failure = redact(error);
    if (named && prepare === 'auto' && REFUSED.has(failure.code ?? '')) {
      db.refusePrepared();
      throw new PreparedStatementsRefused('the server refused a named statement; this pool uses unnamed ones from now on', { cause: failure });
    }
    throw failure;
  }
  return ((result as { rows?: Row[] }).rows ?? []) as Row[];
}
