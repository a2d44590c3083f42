// Every Drizzle PostgreSQL driver the library is tested on, opened the same
// way: a database of the test file's own (cloned from the migrated template),
// or, for PGlite, a database in the process, migrated on opening.
import { PGlite } from '@electric-sql/pglite';
import { neonConfig, Pool as NeonPool } from '@neondatabase/serverless';
import { sql, type SQL } from 'drizzle-orm';
import { drizzle as drizzleNeon } from 'drizzle-orm/neon-serverless';
import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import pg from 'pg';
import postgres from 'postgres';
import { WebSocket } from 'ws';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import type { IdempotencyOptions } from '../../src/index.js';
import { migrate } from '../../src/schema/migrate.js';
import { withDatabase } from './urls.js';
import { startWsProxy, type WsProxy } from './ws-proxy.js';

export interface OpenDriver {
  db: IdempotencyDatabase;
  close(): Promise<void>;
}

export interface DriverUnderTest {
  name: string;
  /** Set for a driver on one connection: why tests of two transactions at once do not apply. */
  oneConnection?: string;
  /** Set when the driver cannot run here: why (the tests are skipped, saying so). */
  unavailable?: string;
  /** Options every call of the suite passes (`prepare`). */
  options?: Pick<IdempotencyOptions, 'prepare'>;
  /** Opens the driver on the database at `url` (PGlite ignores it). */
  open(url: string, name: string): Promise<OpenDriver>;
}

const MAX = 20;

function nodePg(config: pg.PoolConfig): (url: string) => Promise<OpenDriver> {
  return async (url) => {
    const pool = new pg.Pool({ ...config, connectionString: url, max: MAX });
    pool.on('error', () => {});
    return { db: drizzleNodePg({ client: pool }), close: () => pool.end() };
  };
}

function postgresJs(config: postgres.Options<Record<string, postgres.PostgresType>> = {}): (url: string) => Promise<OpenDriver> {
  return async (url) => {
    const client = postgres(url, { ...config, max: MAX, onnotice: () => {} });
    return { db: drizzlePostgresJs({ client }), close: () => client.end({ timeout: 5 }) };
  };
}

let proxy: Promise<WsProxy> | undefined;

/** @neondatabase/serverless's Pool, over WebSockets, through a proxy of ours to the local PostgreSQL. */
async function neonPool(url: string): Promise<OpenDriver> {
  proxy ??= startWsProxy();
  const started = await proxy;
  neonConfig.webSocketConstructor = WebSocket;
  neonConfig.wsProxy = (host, port) => started.address(host, port);
  neonConfig.useSecureWebSocket = false;
  neonConfig.pipelineConnect = false;
  neonConfig.pipelineTLS = false;
  neonConfig.forceDisablePgSSL = true;
  const pool = new NeonPool({ connectionString: url, max: MAX });
  pool.on('error', () => {});
  return { db: drizzleNeon({ client: pool }), close: () => pool.end() };
}

async function pglite(): Promise<OpenDriver> {
  const client = new PGlite();
  const db = drizzlePglite({ client });
  await migrate(db);
  return { db, close: () => client.close() };
}

/** `PGBOUNCER_URL` (set by .ci/run): PgBouncer in transaction pooling mode in front of the test server. */
export const pgbouncerUrl = process.env.PGBOUNCER_URL;
const NO_PGBOUNCER = 'PGBOUNCER_URL is not set (.ci/run starts PgBouncer and sets it)';

/** `url`'s database through PgBouncer, which forwards every database name to the server. */
const throughPgbouncer = (open: (url: string) => Promise<OpenDriver>) => (_url: string, name: string) => open(withDatabase(pgbouncerUrl!, name));

export const DRIVERS: readonly DriverUnderTest[] = [
  { name: 'node-postgres pool (pipeline mode, the default)', open: nodePg({}) },
  { name: 'node-postgres pool with pipeline: false', open: nodePg({ pipeline: false } as pg.PoolConfig) },
  { name: 'postgres.js', open: postgresJs() },
  {
    name: 'PGlite',
    open: pglite,
    oneConnection: 'PGlite is one connection in the process: two transactions never hold a key at the same time',
  },
  { name: '@neondatabase/serverless Pool over WebSockets', open: neonPool },
  {
    name: 'node-postgres pool through PgBouncer (transaction mode)',
    open: throughPgbouncer(nodePg({})),
    unavailable: pgbouncerUrl ? undefined : NO_PGBOUNCER,
  },
  {
    name: 'node-postgres pool through PgBouncer (transaction mode) with prepare: false',
    open: throughPgbouncer(nodePg({})),
    options: { prepare: false },
    unavailable: pgbouncerUrl ? undefined : NO_PGBOUNCER,
  },
  {
    name: 'postgres.js through PgBouncer (transaction mode) with prepare: false',
    open: throughPgbouncer(postgresJs({ prepare: false })),
    unavailable: pgbouncerUrl ? undefined : NO_PGBOUNCER,
  },
];

/** How many connections the WebSocket proxy carried (0 if it never started). */
export async function proxiedConnections(): Promise<number> {
  return proxy ? (await proxy).connections() : 0;
}

/** Stops what the drivers share (the WebSocket proxy). */
export async function closeDrivers(): Promise<void> {
  const started = proxy;
  proxy = undefined;
  if (started) await (await started).close();
}

/** The rows of `query` on `db`, whichever driver answered ({ rows } or an array). */
export async function rowsOn<Row>(db: IdempotencyDatabase, query: SQL): Promise<Row[]> {
  const result = (await db.execute(query)) as Row[] | { rows: Row[] };
  return Array.isArray(result) ? result : result.rows;
}

/** Rows matching `where`, counted by the database. */
export async function countOn(db: IdempotencyDatabase, table: 'charges' | 'idempotency_keys', where: SQL = sql`true`): Promise<number> {
  const [row] = await rowsOn<{ n: number }>(db, sql`select count(*)::int as n from ${sql.identifier(table)} where ${where}`);
  return Number(row!.n);
}

/** The business write, on any driver: one charge row. */
export async function chargeOn(tx: IdempotencyDatabase, ref: string, amount: number): Promise<{ id: number; amount: number }> {
  const [row] = await rowsOn<{ id: number; amount: number }>(tx, sql`insert into charges (ref, amount) values (${ref}, ${amount}) returning id, amount`);
  return row!;
}
