// `npm run serve`: the shop on PORT (default 3000) against DATABASE_URL, or an
// embedded PostgreSQL whose data stays in .data/ so a restart keeps it.
// Payments go through the payment gateway at GATEWAY_URL, or through a fake
// one this process starts on the same database (schema `gateway`). A
// completer finishes payments whose process died mid-way.
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { startCompleter, type Duration } from 'drizzle-idempotency';
import { exitIfUnavailable, startEmbeddedPostgres } from '../../tools/embedded-db.js';
import { startGateway } from '../gateway/app.js';
import { gatewayClient } from '../gateway/client.js';
import { migrateGateway } from '../gateway/store.js';
import { shopApp } from './app.js';
import { startShopBoss, surviveLostConnectionsInPgBoss } from './boss.js';
import { startMailApi } from './mail-api.js';
import { startMailWorkers } from './mail-worker.js';
import { paymentWorkflow } from './payment-workflow.js';
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
// The gateway: its own service (GATEWAY_URL), or a fake one in this process when none is given.
const ownGateway = process.env.GATEWAY_URL ? undefined : await migrateGateway(db).then(() => startGateway(db));
const gateway = gatewayClient(process.env.GATEWAY_URL ?? ownGateway!.url);
console.log(`payment gateway on ${gateway.url}${ownGateway ? ' (a fake, in this process; ledger: GET /v1/ledger)' : ''}`);
const payment = paymentWorkflow(gateway, {
  // Checked by defineWorkflow: a malformed value stops the shop at start with IDEMPOTENCY_OPTIONS_INVALID.
  lease: (process.env.SHOP_PAYMENT_LEASE ?? '30s') as Duration,
  callTimeoutMs: Number(process.env.SHOP_CALL_TIMEOUT_MS ?? 2_000),
});
// Payments whose process died, or whose client gave up, finish here without a client retry.
const completer = startCompleter(db, [payment], {
  interval: (process.env.SHOP_COMPLETER_INTERVAL ?? '5s') as Duration,
  onError: (error) => console.error(`completer: ${(error as Error).message}`),
});
const server = shopApp(db, boss, { gateway, workflow: payment }).listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const address = server.address();
  console.log(`shop listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : '?'}`);
});

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close();
  await completer.stop();
  await boss.stop({ graceful: true, wait: true });
  await mailApi.close();
  await ownGateway?.close();
  await pool.end();
  await embedded?.stop();
}
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());
