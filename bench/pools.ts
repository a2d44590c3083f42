// Connection pools sized to the concurrency under test, opened in full before
// measuring, so connection setup never lands in a measured window and the
// backends' process ids are known to the CPU probe.
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { Redis } from 'ioredis';
import pg from 'pg';
import type { CpuProcesses } from './cpu.js';
import { interceptQueries, type QueryInterceptor } from './pg-tap.js';

export interface BenchPool {
  pool: pg.Pool;
  db: NodePgDatabase;
  backendPids: number[];
  close(): Promise<void>;
}

/**
 * `pipeline`: the pool's node-postgres pipeline option. Unset, the library puts
 * the connections it checks out in pipeline mode itself; `false` opts out.
 */
export async function openPool(url: string, size: number, intercept?: QueryInterceptor, { pipeline }: { pipeline?: boolean } = {}): Promise<BenchPool> {
  // Idle connections stay open: a closed and reopened one would be a new
  // backend the CPU probe does not know.
  const pool = new pg.Pool({ connectionString: url, max: size, idleTimeoutMillis: 0, ...(pipeline === undefined ? {} : { pipeline }) });
  pool.on('error', (error) => console.error(`bench: idle connection lost: ${error.message}`));
  if (intercept) interceptQueries(pool, intercept);
  const clients = await Promise.all(Array.from({ length: size }, () => pool.connect()));
  const backendPids: number[] = [];
  try {
    // A tap sees these too: counters start only after openPool returns.
    for (const client of clients) {
      const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
      backendPids.push(rows[0]!.pid);
    }
  } finally {
    for (const client of clients) client.release();
  }
  return { pool, db: drizzle({ client: pool }), backendPids, close: () => pool.end() };
}

/** The processes the CPU probe watches while `pool` is measured. */
export async function serverProcesses(pool: BenchPool, redis: Redis | undefined): Promise<CpuProcesses> {
  const { rows } = await pool.pool.query<{ pid: number }>(`select pid from pg_stat_activity where backend_type <> 'client backend'`);
  const match = redis ? /^process_id:(\d+)/m.exec(await redis.info('server')) : null;
  return {
    postgresBackends: pool.backendPids,
    postgresBackground: rows.map((r) => r.pid),
    redis: match ? Number(match[1]) : undefined,
  };
}
