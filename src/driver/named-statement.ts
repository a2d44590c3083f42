import { createHash } from 'node:crypto';
import type { SQL } from 'drizzle-orm';

/** What drizzle's PostgreSQL databases and transactions carry at runtime (not in their public types). */
interface DrizzleInternals {
  dialect?: { sqlToQuery(sql: SQL): { sql: string; params: unknown[] } };
  session?: {
    prepareQuery(query: { sql: string; params: unknown[] }, fields: undefined, name: string, arrayMode: boolean): {
      execute(): Promise<unknown>;
    };
  };
}

// One name per statement text. The texts are few (a handful per schema), so
// the map stays small; it spares hashing the text on every call.
const names = new Map<string, string>();

/**
 * The name a statement is prepared under: derived from its text, because
 * node-postgres refuses one name for two texts, and a schema option changes
 * the text.
 */
export function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `drizzle_idempotency_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return name;
}

/**
 * Runs `query` as a named prepared statement through drizzle's own prepared
 * queries: node-postgres parses and plans it once per connection; drivers
 * that prepare on their own (postgres.js) or have no such thing (PGlite)
 * ignore the name. Anything that is not a drizzle database runs it unnamed.
 */
export function executeNamed(db: { execute(query: SQL): PromiseLike<unknown> }, query: SQL): PromiseLike<unknown> {
  const { dialect, session } = db as DrizzleInternals;
  if (!dialect || !session || typeof session.prepareQuery !== 'function') return db.execute(query);
  const built = dialect.sqlToQuery(query);
  return session.prepareQuery(built, undefined, statementName(built.sql), false).execute();
}
