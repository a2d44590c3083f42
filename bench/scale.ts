// `npm run bench:scale [-- --quick]`: throughput of the demo shop with 1, 2
// and 4 processes on one PostgreSQL, behind the round-robin proxy the scale
// test uses. Each operation is one payment with a new key, sent once, or as
// two copies at once (a double click): the copies then usually land on
// different processes and meet at the key's row in the database, where one
// process's duplicates would have waited in process. Reported: payments per
// second, and the ratio to
// one process measured in the same round, median over rounds (a neighbour's
// burst then hits both sides of a ratio alike). Ends with the audit: one
// payment per key.
import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { migrateAll } from '../examples/shop/setup.js';
import { startRoundRobinProxy } from '../test/support/round-robin-proxy.js';
import { startShopCluster } from '../test/support/shop-cluster.js';
import { withDatabase } from '../test/support/urls.js';
import { runClosedLoop, type LoadResult } from './load.js';
import { median, spread } from './stats.js';

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 1 : 3;
const SECONDS = quick ? 3 : 6;
const CLIENTS = 16;
const PROCESS_COUNTS = [1, 2, 4] as const;
const COPIES = [1, 2] as const;
const DATABASE = 'bench_scale';
const server = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const log = (line: string) => process.stderr.write(`${line}\n`);

async function recreateDatabase(): Promise<string> {
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  await admin.query(`drop database if exists ${DATABASE} with (force)`);
  await admin.query(`create database ${DATABASE}`);
  await admin.end();
  return withDatabase(server, DATABASE);
}

async function measure(url: string, processes: number, copies: number): Promise<LoadResult> {
  // Together the shops hold as many connections as one shop of 16 would.
  const cluster = await startShopCluster(url, processes, { poolSize: Math.ceil(16 / processes) });
  const proxy = await startRoundRobinProxy({ targetPorts: cluster.ports });
  const pay = async () => {
    const key = randomUUID();
    const send = async () => {
      const res = await fetch(`${proxy.url}/payments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-user-id': 'bench', 'idempotency-key': key },
        body: JSON.stringify({ amount: 100, currency: 'EUR' }),
      });
      await res.arrayBuffer();
      if (res.status !== 201) throw new Error(`answered ${res.status}`);
    };
    await Promise.all(Array.from({ length: copies }, send));
  };
  try {
    return await runClosedLoop({ operation: pay, workers: CLIENTS, seconds: SECONDS, warmupSeconds: 1 });
  } finally {
    await proxy.close();
    await cluster.stop();
  }
}

const url = await recreateDatabase();
const pool = new pg.Pool({ connectionString: url, max: 2 });
try {
  await migrateAll(drizzle({ client: pool }));
  const rounds: Record<string, LoadResult>[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const results: Record<string, LoadResult> = {};
    for (const copies of COPIES) {
      for (const n of PROCESS_COUNTS) {
        const r = (results[`${copies}:${n}`] = await measure(url, n, copies));
        log(`round ${round + 1}/${ROUNDS}: ${copies} cop${copies === 1 ? 'y' : 'ies'}, ${n} process(es): ${r.perSecond.toFixed(0)} payments/s, p99 ${r.p99Ms.toFixed(1)} ms, ${r.errors} errors`);
      }
    }
    rounds.push(results);
  }
  const { rows } = await pool.query<{ payments: number; keys: number; started: number }>(
    `select (select count(*)::int from shop_payments) as payments, (select count(distinct request_key)::int from shop_payments) as keys,
            (select count(*)::int from idempotency_keys where status <> 'completed') as started`,
  );
  const audit = rows[0]!;
  const lines = [
    `Shop processes behind a round-robin proxy, one PostgreSQL; ${CLIENTS} clients; ${cpus().length} CPUs shared by clients, shops and PostgreSQL; ${ROUNDS} round(s) of ${SECONDS} s.`,
    '',
    '| copies of each payment | processes | payments/s (median) | p99 ms (median) | ÷ 1 process, median (min–max) |',
    '|---|---|---|---|---|',
  ];
  for (const copies of COPIES) {
    for (const n of PROCESS_COUNTS) {
      const at = (r: Record<string, LoadResult>, processes: number) => r[`${copies}:${processes}`]!;
      const ratio = spread(rounds.map((r) => at(r, n).perSecond / at(r, 1).perSecond));
      lines.push(
        `| ${copies} | ${n} | ${median(rounds.map((r) => at(r, n).perSecond)).toFixed(0)} | ${median(rounds.map((r) => at(r, n).p99Ms)).toFixed(1)} | ` +
          `${ratio.median.toFixed(2)}x (${ratio.min.toFixed(2)}–${ratio.max.toFixed(2)}) |`,
      );
    }
  }
  lines.push('', `Audit: ${audit.payments} payments for ${audit.keys} keys, ${audit.started} keys not completed.`);
  process.stdout.write(`${lines.join('\n')}\n`);
  if (audit.payments !== audit.keys || audit.started) process.exitCode = 1;
} finally {
  await pool.end();
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  await admin.query(`drop database if exists ${DATABASE} with (force)`);
  await admin.end();
}
