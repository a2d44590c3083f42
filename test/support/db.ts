import { randomBytes } from 'node:crypto';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { afterAll, inject } from 'vitest';
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
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    const cleanup = new pg.Client({ connectionString: server });
    await cleanup.connect();
    await cleanup.query(`drop database if exists ${name} with (force)`);
    await cleanup.end();
  });
  return { url, name, pool, db: drizzle({ client: pool }), newPool };
}
