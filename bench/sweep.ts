// Sweep benchmark (not a test): how fast `sweepExpiredKeys` deletes expired
// rows, and what it costs concurrent `withIdempotency` writers, measured in one
// run against the same table.
//
//   npx tsx bench/sweep.ts [--quick] [--rows N] [--writers N] [--batch N] [--window MS] [--json]
//   npm run bench:sweep -- --quick
//
// On a scratch database (DATABASE_URL's server, else embedded PostgreSQL):
//   1. seed N expired keys, VACUUM ANALYZE, warm the writers up;
//   2. writers run without pause while the sweep alternates: one window
//      sweeping (a sweep with that time budget), one window idle, until the N
//      rows are gone. A writer call that lies wholly inside a sweeping window
//      counts as "during", wholly inside an idle one as "without"; calls
//      across a boundary are dropped. Alternating windows, rather than a
//      baseline before and after, keeps the drift of a shared machine out of
//      the comparison;
//   3. seed N again and sweep with nothing else running: the sweep rate alone.
import { randomBytes, randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { migrate, sweepExpiredKeys, withIdempotency } from '../src/index.js';
import { startEmbeddedPostgres } from '../tools/embedded-db.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    rows: { type: 'string' },
    writers: { type: 'string' },
    batch: { type: 'string' },
    window: { type: 'string' },
    json: { type: 'boolean' },
  },
});
const quick = args.quick === true;
const ROWS = Number(args.rows ?? (quick ? 200_000 : 1_000_000));
const WRITERS = Number(args.writers ?? 8);
const BATCH = Number(args.batch ?? 1_000);
const WINDOW_MS = Number(args.window ?? (quick ? 500 : 1_000));
const WARMUP_MS = quick ? 1_000 : 3_000;

/** One writer call: when it started and ended (ms on performance.now()). */
interface Call {
  start: number;
  end: number;
}

interface Window {
  start: number;
  end: number;
  sweeping: boolean;
}

interface LatencySummary {
  n: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function summarise(calls: Call[], windows: Window[]): LatencySummary {
  const sorted = calls.map((c) => c.end - c.start).sort((a, b) => a - b);
  const timeMs = windows.reduce((sum, w) => sum + (w.end - w.start), 0);
  return {
    n: sorted.length,
    opsPerSecond: (sorted.length * 1_000) / timeMs,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.at(-1) ?? NaN,
  };
}

/** One first execution per call: claim a fresh key, write an order, store the result. */
async function placeOrder(db: NodePgDatabase): Promise<void> {
  const key = randomUUID();
  await withIdempotency(
    db,
    key,
    async (tx) => {
      const result = await tx.execute<{ id: number }>(sql`insert into bench_orders (ref, amount) values (${key}, 500) returning id`);
      return { orderId: result.rows[0]!.id };
    },
    { scope: 'bench', fingerprint: { amount: 500 } },
  );
}

/** `WRITERS` loops of `placeOrder`, recording every call, until `stop()`. */
function startWriters(db: NodePgDatabase) {
  let running = true;
  const calls: Call[] = [];
  let errors = 0;
  const done = Promise.all(
    Array.from({ length: WRITERS }, async () => {
      while (running) {
        const start = performance.now();
        try {
          await placeOrder(db);
          calls.push({ start, end: performance.now() });
        } catch {
          errors++;
        }
      }
    }),
  );
  return {
    calls,
    errors: () => errors,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function seedExpired(pool: pg.Pool, rows: number): Promise<number> {
  const t0 = performance.now();
  await pool.query(
    `insert into idempotency_keys (scope, key, status, response, created_at, completed_at, expires_at)
     select 'expired', 'k-' || i, 'completed', '{"value":{"orderId":1}}'::jsonb,
            now() - interval '2 days', now() - interval '2 days',
            now() - interval '1 day' + i * interval '1 millisecond'
     from generate_series(1, $1::int) as i`,
    [rows],
  );
  await pool.query('vacuum analyze idempotency_keys');
  return performance.now() - t0;
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const label = (text: string) => text.padEnd(22);
const latencyLine = (name: string, s: LatencySummary) =>
  `${label(name)} p50 ${fmt(s.p50Ms, 2)} ms  p99 ${fmt(s.p99Ms, 2)} ms  max ${fmt(s.maxMs, 1)} ms  ${fmt(s.opsPerSecond)} ops/s  (n=${fmt(s.n)})`;
const rateLine = (name: string, rows: number, ms: number, batches: number) =>
  `${label(name)} ${fmt(rows)} rows in ${fmt(ms / 1_000, 2)} s of sweeping = ${fmt((rows * 1_000) / ms)} rows/s (${fmt(batches)} batches)`;

const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres();
const serverUrl = process.env.DATABASE_URL ?? embedded!.url;
const database = `bench_sweep_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: serverUrl });
await admin.connect();
await admin.query(`create database ${database}`);
const url = new URL(serverUrl);
url.pathname = `/${database}`;
const writerPool = new pg.Pool({ connectionString: url.toString(), max: WRITERS });
const sweepPool = new pg.Pool({ connectionString: url.toString(), max: 1 });
// DROP DATABASE … WITH (FORCE) at the end may reach a connection still closing.
for (const pool of [writerPool, sweepPool]) pool.on('error', () => {});
const writerDb = drizzle({ client: writerPool });
const sweepDb = drizzle({ client: sweepPool });
const log = (text: string) => (args.json ? undefined : console.log(text));

try {
  const { rows: [server] } = await admin.query<{ server_version: string }>('show server_version');
  await migrate(sweepDb);
  await sweepPool.query('create table bench_orders (id bigserial primary key, ref text not null, amount integer not null)');
  log(
    `sweep benchmark: PostgreSQL ${server!.server_version} (${embedded ? 'embedded' : 'DATABASE_URL'}), ${cpus().length} CPUs, ` +
      `${fmt(ROWS)} expired rows, batches of ${fmt(BATCH)}, ${WRITERS} writers, windows of ${WINDOW_MS} ms${quick ? ', --quick' : ''}`,
  );

  const seedMs = await seedExpired(sweepPool, ROWS);
  log(`seeded ${fmt(ROWS)} expired rows in ${fmt(seedMs / 1_000, 1)} s`);

  const writers = startWriters(writerDb);
  await sleep(WARMUP_MS);
  writers.calls.length = 0;
  const windows: Window[] = [];
  let swept = 0;
  let batches = 0;
  while (swept < ROWS) {
    const idle = performance.now();
    await sleep(WINDOW_MS);
    windows.push({ start: idle, end: performance.now(), sweeping: false });
    const start = performance.now();
    const result = await sweepExpiredKeys(sweepDb, { batchSize: BATCH, timeBudget: WINDOW_MS });
    windows.push({ start, end: performance.now(), sweeping: true });
    swept += result.deleted;
    batches += result.batches;
    if (result.stoppedBy === 'drained' && result.deleted === 0) break;
  }
  // One more idle window, so that both sides get as many.
  const lastIdle = performance.now();
  await sleep(WINDOW_MS);
  windows.push({ start: lastIdle, end: performance.now(), sweeping: false });
  await writers.stop();

  const inside = (sweeping: boolean) =>
    writers.calls.filter((c) => windows.some((w) => w.sweeping === sweeping && c.start >= w.start && c.end <= w.end));
  const sweepingWindows = windows.filter((w) => w.sweeping);
  const idleWindows = windows.filter((w) => !w.sweeping);
  const during = summarise(inside(true), sweepingWindows);
  const without = summarise(inside(false), idleWindows);
  const sweepingMs = sweepingWindows.reduce((sum, w) => sum + (w.end - w.start), 0);
  log(latencyLine('writers, no sweep', without));
  log(latencyLine('writers during sweep', during));
  log(rateLine('sweep under writers', swept, sweepingMs, batches));

  await seedExpired(sweepPool, ROWS);
  const alone = await sweepExpiredKeys(sweepDb, { batchSize: BATCH });
  log(rateLine('sweep alone', alone.deleted, alone.durationMs, alone.batches));

  const ratios = {
    p99DuringOverWithout: during.p99Ms / without.p99Ms,
    p50DuringOverWithout: during.p50Ms / without.p50Ms,
    throughputDuringOverWithout: during.opsPerSecond / without.opsPerSecond,
    sweepRateUnderWritersOverAlone: (swept / sweepingMs) / (alone.deleted / alone.durationMs),
  };
  log(
    `ratios: writers' p99 during/without sweep ${fmt(ratios.p99DuringOverWithout, 2)}x, ` +
      `p50 ${fmt(ratios.p50DuringOverWithout, 2)}x, throughput ${fmt(ratios.throughputDuringOverWithout, 2)}x; ` +
      `sweep rate under writers/alone ${fmt(ratios.sweepRateUnderWritersOverAlone, 2)}x`,
  );
  if (writers.errors() > 0) log(`writer errors: ${writers.errors()}`);
  if (args.json) {
    console.log(JSON.stringify({ rows: ROWS, batch: BATCH, writers: WRITERS, windowMs: WINDOW_MS, without, during, swept, sweepingMs, alone, ratios, writerErrors: writers.errors() }));
  }
  if (swept !== ROWS || alone.deleted !== ROWS || writers.errors() > 0) {
    console.error(`expected ${ROWS} rows swept twice and no writer error; swept ${swept} and ${alone.deleted}, ${writers.errors()} errors`);
    process.exitCode = 1;
  }
} finally {
  await Promise.all([writerPool.end(), sweepPool.end()]);
  await admin.query(`drop database if exists ${database} with (force)`);
  await admin.end();
  await embedded?.stop();
}
