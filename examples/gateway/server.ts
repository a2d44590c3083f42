// The fake payment gateway as its own process: `tsx examples/gateway/server.ts`
// with DATABASE_URL (its ledger: schema `gateway` there) and PORT (default 0,
// any free port). Prints "gateway listening on http://127.0.0.1:<port>" once it
// answers; SIGTERM or SIGINT stops it. Started by spawnGateway
// (GATEWAY_EXIT_WITH_PARENT=1), it also exits when its parent goes (its stdin
// closes), so a demo killed with SIGKILL leaves no gateway behind.
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { startGateway } from './app.js';
import { migrateGateway } from './store.js';

if (!process.env.DATABASE_URL) {
  console.error('set DATABASE_URL: the gateway keeps its ledger in PostgreSQL (schema "gateway")');
  process.exit(2);
}
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.POOL_SIZE ?? 10) });
pool.on('error', (error) => console.error(`gateway: idle connection lost: ${error.message}`));
const db = drizzle({ client: pool });
await migrateGateway(db);
const gateway = await startGateway(db, { port: Number(process.env.PORT ?? 0) });
console.log(`gateway listening on ${gateway.url}`);

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  await gateway.close();
  await pool.end();
  // Stdin, read to notice the parent going, would keep the process alive.
  process.stdin.destroy();
}
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());
if (process.env.GATEWAY_EXIT_WITH_PARENT === '1') process.stdin.on('end', () => process.exit(0)).resume();
