import { sql } from 'drizzle-orm';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { CliError, EXIT, oneLine, tableMissingError } from './errors.js';
import { queryRows } from '../driver/database.js';
import { keysTableOid } from '../schema/keys-table.js';

/** The CLI's connection: a small pool and the Drizzle database on it. */
export interface CliDatabase {
  db: NodePgDatabase;
  /** The URL without its password, for messages. */
  where: string;
  close(): Promise<void>;
}

/** A connection string fit to print: no password, no query parameters. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    const user = u.username ? `${decodeURIComponent(u.username)}@` : '';
    return `${u.protocol}//${user}${u.host}${u.pathname}`;
  } catch {
    return 'the given database URL';
  }
}

/**
 * Opens a pool and proves it works with one round trip, so that "cannot
 * connect" is told apart from everything that can go wrong afterwards.
 * pg is an optional peer of the library but required by the CLI: it is
 * imported here, on demand, so that `--help` runs without it.
 */
export async function connect(url: string): Promise<CliDatabase> {
  const where = describeUrl(url);
  let modules: [typeof import('pg'), typeof import('drizzle-orm/node-postgres')];
  try {
    modules = await Promise.all([import('pg'), import('drizzle-orm/node-postgres')]);
  } catch (error) {
    throw new CliError(EXIT.failure, `the CLI needs the pg driver: npm install pg (${oneLine(error)})`, { cause: error });
  }
  const [{ default: pg }, { drizzle }] = modules;
  const pool = new pg.Pool({
    connectionString: url,
    max: 2,
    connectionTimeoutMillis: 10_000,
    application_name: 'drizzle-idempotency',
  });
  // An idle connection dropped by the server must not crash the process; the next query reports it.
  pool.on('error', () => {});
  const close = () => pool.end().catch(() => {});
  try {
    await pool.query('select 1');
  } catch (error) {
    await close();
    throw new CliError(
      EXIT.unreachable,
      `cannot reach the database at ${where}: ${oneLine(error)}. Check --database-url (or DATABASE_URL) and that PostgreSQL is running`,
      { cause: error },
    );
  }
  return { db: drizzle({ client: pool }), where, close };
}

/** Fails with exit code 4 and the command that fixes it when the keys table is not there. */
export async function requireKeysTable(db: NodePgDatabase, schema: string | undefined): Promise<void> {
  const [row] = await queryRows<{ found: boolean }>(db, sql`select ${keysTableOid(schema)} is not null as found`);
  if (!row?.found) throw tableMissingError(schema);
}
