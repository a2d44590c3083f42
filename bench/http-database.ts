// The HTTP bench's own database, next to whatever else lives on the server:
// recreated at the start of every run (a crashed run may have left it) and
// dropped at the end. No other database is written to.
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { migrateAll } from '../examples/shop/setup.js';

export const HTTP_BENCH_DATABASE = 'bench_http';

/** `serverUrl` with its database swapped for `database`. */
export function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Creates the bench database with the shop's tables and the library's; returns its URL. */
export async function createBenchDatabase(serverUrl: string): Promise<string> {
  await dropBenchDatabase(serverUrl);
  await onServer(serverUrl, (client) => client.query(`CREATE DATABASE ${pg.escapeIdentifier(HTTP_BENCH_DATABASE)}`));
  const url = withDatabase(serverUrl, HTTP_BENCH_DATABASE);
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    await migrateAll(drizzle({ client: pool }));
  } finally {
    await pool.end();
  }
  return url;
}

export async function dropBenchDatabase(serverUrl: string): Promise<void> {
  // FORCE: a killed run's server process may still hold connections to it.
  await onServer(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(HTTP_BENCH_DATABASE)} WITH (FORCE)`));
}

/** Effects of one variant so far: rows in shop_payments with its channel. */
export async function countPayments(pool: pg.Pool, channel: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM shop_payments WHERE channel = $1', [channel]);
  return Number(rows[0]!.n);
}

async function onServer(serverUrl: string, run: (client: pg.Client) => Promise<unknown>): Promise<void> {
  if (new URL(serverUrl).pathname === `/${HTTP_BENCH_DATABASE}`) {
    throw new Error(`DATABASE_URL must name another database on the server than ${HTTP_BENCH_DATABASE}, which the bench drops`);
  }
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await run(client);
  } finally {
    await client.end();
  }
}
