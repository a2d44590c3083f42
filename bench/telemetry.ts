// What telemetry costs a call, measured (not a test): `npx tsx bench/telemetry.ts`.
// 1. The only work a call does when nobody listens: startTrace's check of the
//    channels (every later hook is a test of `undefined`).
// 2. The same with a listener: two SHA-256 hashes and the trace object.
// 3. End to end on PostgreSQL (a database of its own on DATABASE_URL's server): CPU per replay without a
//    listener, and with a no-op listener on every channel.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { IDEMPOTENCY_CHANNELS, migrate, withIdempotency } from '../src/index.js';
import { startTrace } from '../src/telemetry/publish.js';

function nsPer(n: number, body: () => unknown): number {
  let sink = 0;
  for (let i = 0; i < n / 10; i++) sink += body() === undefined ? 0 : 1; // warm-up
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += body() === undefined ? 0 : 1;
  const ns = Number(process.hrtime.bigint() - started) / n;
  if (sink < 0) console.log(sink);
  return ns;
}

const noop = () => {};
const listenAll = () => Object.values(IDEMPOTENCY_CHANNELS).forEach((name) => subscribe(name, noop));
const unlistenAll = () => Object.values(IDEMPOTENCY_CHANNELS).forEach((name) => unsubscribe(name, noop));

console.log(`startTrace, nobody listening: ${nsPer(10_000_000, () => startTrace('tenant-1', 'order-42', 'wait', 'own')).toFixed(1)} ns per call`);
listenAll();
console.log(`startTrace, listened to:      ${nsPer(1_000_000, () => startTrace('tenant-1', 'order-42', 'wait', 'own')).toFixed(1)} ns per call`);
unlistenAll();

const server = process.env.DATABASE_URL;
if (server) {
  // A database of its own, dropped at the end.
  const name = `bench_telemetry_${process.pid}`;
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(server);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.href, max: 4 });
  const db = drizzle({ client: pool });
  await migrate(db);
  await withIdempotency(db, 'bench-telemetry', async () => ({ ok: true }));
  const cpuPerReplay = async (n: number) => {
    const before = process.cpuUsage();
    for (let i = 0; i < n; i++) await withIdempotency(db, 'bench-telemetry', async () => ({ ok: true }), { lookupFirst: true });
    const used = process.cpuUsage(before);
    return (used.user + used.system) / n;
  };
  await cpuPerReplay(2_000); // warm-up
  for (let round = 0; round < 3; round++) {
    const quiet = await cpuPerReplay(5_000);
    listenAll();
    const listened = await cpuPerReplay(5_000);
    unlistenAll();
    console.log(`replay (lookupFirst), CPU per call: ${quiet.toFixed(1)} µs nobody listening, ${listened.toFixed(1)} µs with a no-op listener on every channel`);
  }
  await pool.end();
  await admin.query(`drop database ${name} with (force)`);
  await admin.end();
}
