// `npm run serve`: the shop on PORT (default 3000) against DATABASE_URL, or an
// embedded PostgreSQL whose data stays in .data/ so a restart keeps it.
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { exitIfUnavailable, startEmbeddedPostgres } from '../../tools/embedded-db.js';
import { shopApp } from './app.js';
import { openMailSink, startOutboxWorker } from './outbox-worker.js';
import { migrateAll } from './setup.js';

const root = new URL('../../', import.meta.url).pathname;
const embedded = process.env.DATABASE_URL
  ? undefined
  : await startEmbeddedPostgres({ dataDir: join(root, '.data', 'postgres') }).catch(exitIfUnavailable);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? embedded!.url, max: Number(process.env.POOL_SIZE ?? 20) });
pool.on('error', (error) => console.error(`idle connection lost: ${error.message}`));
const db = drizzle({ client: pool });
await migrateAll(db);

const sinkPath = process.env.MAIL_SINK ?? join(root, '.data', 'mail.jsonl');
await mkdir(dirname(sinkPath), { recursive: true });
const sink = await openMailSink(sinkPath);
const worker = startOutboxWorker(db, sink, { onError: (error) => console.error('outbox:', error) });
const server = shopApp(db).listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const address = server.address();
  console.log(`shop listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : '?'}`);
});

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close();
  await worker.stop();
  await pool.end();
  await embedded?.stop();
}
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());
