// `npm run serve`: the shop on PORT (default 3000) against DATABASE_URL, or an
// embedded PostgreSQL whose data stays in .data/ so a restart keeps it.
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { exitIfUnavailable, startEmbeddedPostgres } from '../../tools/embedded-db.js';
import { shopApp } from './app.js';
import { startShopBoss, surviveLostConnectionsInPgBoss } from './boss.js';
import { startMailApi } from './mail-api.js';
import { startMailWorkers } from './mail-worker.js';
import { migrateAll } from './setup.js';

const root = new URL('../../', import.meta.url).pathname;
const embedded = process.env.DATABASE_URL
  ? undefined
  : await startEmbeddedPostgres({ dataDir: join(root, '.data', 'postgres') }).catch(exitIfUnavailable);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? embedded!.url, max: Number(process.env.POOL_SIZE ?? 20) });
pool.on('error', (error) => console.error(`idle connection lost: ${error.message}`));
// Transactions that are drizzle's own, not the library's (the mail workers'): while
// one holds a connection between two statements, a
// server restart is an 'error' event on that client, which ends the process
// when nobody listens. The statement that runs next fails, as it should.
pool.on('connect', (client) => client.on('error', (error) => console.error(`connection lost: ${error.message}`)));
const db = drizzle({ client: pool });
await migrateAll(db);

// The fake mail API (its deliveries also appended to a JSON-lines file), pg-boss and its mail workers.
const mailLog = process.env.MAIL_SINK ?? join(root, '.data', 'mail.jsonl');
await mkdir(dirname(mailLog), { recursive: true });
const mailApi = await startMailApi({ port: Number(process.env.MAIL_API_PORT ?? 0), logPath: mailLog });
surviveLostConnectionsInPgBoss();
const boss = await startShopBoss(process.env.DATABASE_URL ?? embedded!.url);
await startMailWorkers(db, boss, mailApi.url);
console.log(`mail API on ${mailApi.url} (deliveries: GET ${mailApi.url}/messages, and ${mailLog})`);
const server = shopApp(db, boss).listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const address = server.address();
  console.log(`shop listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : '?'}`);
});

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close();
  await boss.stop({ graceful: true, wait: true });
  await mailApi.close();
  await pool.end();
  await embedded?.stop();
}
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());
