import { randomBytes } from 'node:crypto';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { afterAll, inject, type TestContext } from 'vitest';
import { withDatabase } from './urls.js';

export interface TestDatabase {
  url: string;
  name: string;
  pool: pg.Pool;
  db: NodePgDatabase;
  /** A fresh pool on the same database (its own connections). */
  newPool(max?: number, config?: pg.PoolConfig): pg.Pool;
}

/**
 * A database of this test file's own, cloned from the migrated template (or
 * empty with `migrated: false`), dropped after the file.
 */
export async function testDatabase(options: { migrated?: boolean; max?: number } = {}): Promise<TestDatabase> {
  const { database, drop } = await createDatabase(options);
  afterAll(drop);
  return database;
}

/**
 * A database of the calling test's own, dropped (its connections closed) when
 * the test finishes: for files whose tests run concurrently and must not see
 * each other's keys (a completer takes every abandoned key of its database).
 * Give it the test's context: a concurrent test's hooks are the context's.
 *
 * @example const t = await testDatabaseForTest(context, { max: 4 });
 */
export async function testDatabaseForTest(test: Pick<TestContext, 'onTestFinished'>, options: { migrated?: boolean; max?: number } = {}): Promise<TestDatabase> {
  const { database, drop } = await createDatabase(options);
  test.onTestFinished(drop);
  return database;
}

async function createDatabase(options: { migrated?: boolean; max?: number }): Promise<{ database: TestDatabase; drop: () => Promise<void> }> {
  const server = inject('serverUrl');
  const template = inject('templateDatabase');
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  await admin.query(`create database ${name}${options.migrated === false ? '' : ` template ${template}`}`);
  await admin.end();
  const url = withDatabase(server, name);
  const pools: pg.Pool[] = [];
  const newPool = (max = 10, config: pg.PoolConfig = {}) => {
    const p = new pg.Pool({ ...config, connectionString: url, max });
    // Tests kill backends on purpose; node-postgres reports that on the pool for
    // idle clients and on the client for checked-out ones. Neither may crash the runner.
    p.on('error', () => {});
    p.on('connect', (client) => client.on('error', () => {}));
    pools.push(p);
    return p;
  };
  const pool = newPool(options.max ?? 60);
  const drop = async () => {
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    const cleanup = new pg.Client({ connectionString: server });
    await cleanup.connect();
    await cleanup.query(`drop database if exists ${name} with (force)`);
    await cleanup.end();
  };
  return { database: { url, name, pool, db: drizzle({ client: pool }), newPool }, drop };
}
