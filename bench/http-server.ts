// The bench app in a process of its own, started by http-server-process.ts: autocannon in the
// same event loop would take its CPU from the server it measures. Configured by
// environment, it answers its port over IPC once listening and stops on
// SIGTERM or when the parent goes away.
import type { AddressInfo } from 'node:net';
import { drizzle } from 'drizzle-orm/node-postgres';
import { Redis } from 'ioredis';
import pg from 'pg';
import { benchHttpApp } from './http-app.js';
import { CONFIG_ENV, type HttpServerConfig, type ListeningMessage } from './http-server-process.js';

const config = JSON.parse(process.env[CONFIG_ENV] ?? 'null') as HttpServerConfig | null;
if (!config || !process.send) throw new Error(`start this through startBenchServer(): it needs ${CONFIG_ENV} and an IPC channel`);

// Idle connections stay open: a backend that ends would take its CPU time out of the per-request readings.
const pool = new pg.Pool({ connectionString: config.databaseUrl, max: config.poolSize, idleTimeoutMillis: 0 });
pool.on('error', (error) => console.error(`bench server: idle connection lost: ${error.message}`));
const plainPool = new pg.Pool({ connectionString: config.databaseUrl, max: config.poolSize, pipeline: false, idleTimeoutMillis: 0 });
plainPool.on('error', (error) => console.error(`bench server: idle connection lost: ${error.message}`));
const redis = new Redis(config.redisUrl, { lazyConnect: true });
await redis.connect();

const server = benchHttpApp(drizzle({ client: pool }), drizzle({ client: plainPool }), pool, redis, config.redisPrefix).listen(0, '127.0.0.1', () => {
  process.send!({ port: (server.address() as AddressInfo).port } satisfies ListeningMessage);
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  // The parent stops us between runs, so no request is in flight; any keep-alive
  // connection left is idle.
  const closed = new Promise((resolve) => server.close(resolve));
  server.closeIdleConnections();
  await closed;
  await Promise.allSettled([pool.end(), plainPool.end(), redis.quit()]);
  process.disconnect?.();
}
process.on('SIGTERM', () => void stop());
process.on('disconnect', () => void stop());
