// Part 4: does the key table slow down as it grows? (a), (b) and (c) at a
// fixed connection count with 0, 1M and 10M completed keys already in
// idempotency_keys, plus what a key costs on disk. Sizes are measured minutes
// apart, and on a shared machine the minutes differ more than the sizes do;
// so every round also runs (b) and (c) against a second key table, in its
// own schema, that only ever holds the keys this part writes, and the growth
// verdict is the ratio of the two inside a round.
import { performance } from 'node:perf_hooks';
import { drizzle } from 'drizzle-orm/node-postgres';
import { Redis } from 'ioredis';
import pg from 'pg';
import { migrate } from '../src/index.js';
import { AMOUNT, SKU_COUNT } from './business.js';
import type { ChartPanel } from './chart.js';
import { bytes, rateSpread, ratio, ratioSpread, rows as formatRows, table, verdict } from './format.js';
import type { BenchContext, BenchModule, ModuleReport, TargetCheck } from './module.js';
import { openPool } from './pools.js';
import { RESULT_TTL_SECONDS } from './redis-idempotency.js';
import { measureRounds, pairedRatio, rates, type RoundResults } from './rounds.js';
import { againstSchema, bare, createReplayKeys, firstExecution, replay, TENANT_COUNT, type ScenarioId } from './scenarios.js';
import { SERIES_COLORS } from './throughput.js';

const FILL_CHUNK = 250_000;
// Two sessions: the machine has two cores, and the fill is CPU bound.
const FILL_SESSIONS = 2;
const SMALL_TABLE_SCHEMA = 'bench_small';

interface TableSizes {
  rows: number;
  heapBytes: number;
  primaryKeyBytes: number;
  expiresIndexBytes: number;
}

interface SizeResult {
  prefilled: number;
  fillSeconds: number;
  sizes: TableSizes;
  results: RoundResults;
}

export const growthModule: BenchModule = {
  id: 'growth',
  part: 4,
  title: 'Growth of the key table',
  async run(ctx: BenchContext): Promise<ModuleReport> {
    const { env, options, log } = ctx;
    const admin = new pg.Pool({ connectionString: env.url, max: FILL_SESSIONS });
    const redis = new Redis(env.redisUrl);
    const bySize: SizeResult[] = [];
    try {
      // Start from empty tables: earlier parts left their keys in the public one.
      await migrate(drizzle({ client: admin }), { schema: SMALL_TABLE_SCHEMA });
      await admin.query(`truncate idempotency_keys, ${SMALL_TABLE_SCHEMA}.idempotency_keys`);
      const setup = await openPool(env.url, 8);
      const [replayKeys, smallReplayKeys] = await Promise.all([
        createReplayKeys(setup.db, options.replayKeys),
        createReplayKeys(setup.db, options.replayKeys, SMALL_TABLE_SCHEMA),
      ]).finally(() => setup.close());
      const scenarios = [
        bare,
        firstExecution,
        replay,
        againstSchema(firstExecution, 'b-small', 'withIdempotency, small key table', SMALL_TABLE_SCHEMA, smallReplayKeys),
        againstSchema(replay, 'c-small', 'replay, small key table', SMALL_TABLE_SCHEMA, smallReplayKeys),
      ];
      let filled = 0;
      for (const target of options.growthRows) {
        const fillStart = performance.now();
        if (target > filled) {
          await fill(admin, filled, target, log);
          filled = target;
          await settle(admin);
        }
        const fillSeconds = (performance.now() - fillStart) / 1000;
        const sizes = await tableSizes(admin);
        const pool = await openPool(env.url, options.growthConnections);
        try {
          const results = await measureRounds({
            pool,
            scenarios,
            context: { redis, redisOptions: { prefix: env.redisPrefix, lockTtlSeconds: 30, resultTtlSeconds: RESULT_TTL_SECONDS }, replayKeys },
            rounds: options.growthRounds,
            seconds: options.seconds,
            warmupSeconds: options.warmupSeconds,
            log,
            label: `${formatRows(target)} rows`,
          });
          bySize.push({ prefilled: target, fillSeconds, sizes, results });
        } finally {
          await pool.close();
        }
      }
    } finally {
      redis.disconnect();
      await admin.end();
    }
    return report(bySize, options.growthConnections);
  },
};

/**
 * Adds rows [from, to) shaped like the ones the library writes: a random
 * UUID key in one of the tenants' scopes (so the primary key index grows by
 * random inserts, as in production), a fingerprint, a completed response,
 * and an expiry spread over the next 24 hours.
 */
async function fill(admin: pg.Pool, from: number, to: number, log: (line: string) => void): Promise<void> {
  const started = performance.now();
  let next = from;
  let done = 0;
  const session = async () => {
    while (next < to) {
      const first = next;
      const last = Math.min(to, first + FILL_CHUNK) - 1;
      next = last + 1;
      await admin.query(
        `insert into idempotency_keys (scope, key, fingerprint, status, response, created_at, completed_at, expires_at)
         select 'tenant-' || (g % $3), gen_random_uuid()::text,
                'sha256:' || left(md5(g::text) || md5((g + 1)::text), 43), 'completed',
                jsonb_build_object('value', jsonb_build_object(
                  'chargeId', g, 'sku', 'sku-' || (1 + g % $4), 'amount', $5::int, 'stockLeft', 1000000000 - g)),
                now() - age * interval '24 hours', now() - age * interval '24 hours',
                now() + (1 - age) * interval '24 hours'
         from (select g, random() as age from generate_series($1::bigint, $2::bigint) as g) as s`,
        [first, last, TENANT_COUNT, SKU_COUNT, AMOUNT],
      );
      done += last - first + 1;
      if (done % 1_000_000 < FILL_CHUNK) log(`  filled ${formatRows(from + done)} rows (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    }
  };
  await Promise.all(Array.from({ length: FILL_SESSIONS }, session));
}

/** Fresh statistics for the planner, and the fill's dirty pages written out,
 * so its checkpoint does not land in the measurement. */
async function settle(admin: pg.Pool): Promise<void> {
  await admin.query('analyze idempotency_keys');
  // Needs superuser or pg_checkpoint; without, the measurement is just noisier.
  await admin.query('checkpoint').catch(() => {});
}

async function tableSizes(admin: pg.Pool): Promise<TableSizes> {
  const { rows } = await admin.query<{ n: string; heap: string; pkey: string; expires: string }>(
    `select (select count(*) from idempotency_keys) as n,
            pg_table_size('idempotency_keys') as heap,
            pg_relation_size('idempotency_keys_pkey') as pkey,
            pg_relation_size('idempotency_keys_expires_at_idx') as expires`,
  );
  const r = rows[0]!;
  return { rows: Number(r.n), heapBytes: Number(r.heap), primaryKeyBytes: Number(r.pkey), expiresIndexBytes: Number(r.expires) };
}

function report(bySize: SizeResult[], connections: number): ModuleReport {
  const base = bySize[0]!;
  const last = bySize.at(-1)!;
  const versusSmall = (s: SizeResult, id: 'b' | 'c') => pairedRatio(s.results, id, `${id}-small`);
  const versusEmpty = (s: SizeResult, id: 'b' | 'c') => rates(s.results, id).median / rates(base.results, id).median;
  const throughputTable = table(
    ['keys pre-filled', '(a) tx/s', '(b) tx/s', '(b) ÷ (b) on the small table', '(c) tx/s', '(c) ÷ (c) on the small table', '(b) ÷ (a)', '(c) ÷ (a)', 'fill + analyze + checkpoint'],
    bySize.map((s) => [
      formatRows(s.prefilled),
      rateSpread(rates(s.results, 'a')),
      rateSpread(rates(s.results, 'b')),
      ratioSpread(versusSmall(s, 'b')),
      rateSpread(rates(s.results, 'c')),
      ratioSpread(versusSmall(s, 'c')),
      ratioSpread(pairedRatio(s.results, 'b', 'a')),
      ratioSpread(pairedRatio(s.results, 'c', 'a')),
      s.prefilled === 0 ? '–' : `${s.fillSeconds.toFixed(0)} s`,
    ]),
  );
  const sizeTable = table(
    ['keys pre-filled', 'rows in table', 'table (heap+TOAST)', 'primary key', 'expires_at index', 'bytes per key: table / pkey / expires_at / total'],
    bySize.map((s) => {
      const z = s.sizes;
      // A small table is mostly fixed overhead (first pages, index root): no per-key figure.
      const per = (b: number) => (z.rows < 100_000 ? '–' : String(Math.round(b / z.rows)));
      return [
        formatRows(s.prefilled),
        z.rows.toLocaleString('en-US'),
        bytes(z.heapBytes),
        bytes(z.primaryKeyBytes),
        bytes(z.expiresIndexBytes),
        `${per(z.heapBytes)} / ${per(z.primaryKeyBytes)} / ${per(z.expiresIndexBytes)} / ${per(z.heapBytes + z.primaryKeyBytes + z.expiresIndexBytes)}`,
      ];
    }),
  );
  const targets: TargetCheck[] =
    last.prefilled === 0
      ? []
      : (['b', 'c'] as const).map((id) => ({
          target: `(${id}) at ${formatRows(last.prefilled)} keys ≥ 0.9x (${id}) at ${formatRows(base.prefilled)} (paired with a small key table in the same round)`,
          measured: `${ratioSpread(versusSmall(last, id))} paired with the small table; unpaired against the ${formatRows(base.prefilled)} run minutes earlier: ${ratio(versusEmpty(last, id))}`,
          met: versusSmall(last, id).median >= 0.9,
        }));
  const chart: ChartPanel = {
    title: `Part 4: growth, ${connections} connections`,
    yLabel: 'tx/s (median, whisker min–max)',
    series: [bare, firstExecution, replay].map((s) => ({ id: s.id, label: `(${s.id}) ${s.short}`, color: SERIES_COLORS[s.id as ScenarioId] })),
    groups: bySize.map((s) => ({
      label: `${formatRows(s.prefilled)} keys`,
      bars: (['a', 'b', 'c'] as const).map((id) => {
        const r = rates(s.results, id);
        return { series: id, value: r.median, low: r.min, high: r.max };
      }),
    })),
  };
  const markdown = [
    `At ${connections} connections, after pre-filling \`idempotency_keys\` with INSERT ... SELECT generate_series (random UUID keys over ${TENANT_COUNT} tenant scopes, ` +
      'completed responses, expiries spread over 24 h; two sessions in parallel), then ANALYZE and CHECKPOINT. ' +
      `Every round also runs (b) and (c) against a second key table (schema \`${SMALL_TABLE_SCHEMA}\`) that holds only the keys this part writes, ` +
      'so "÷ on the small table" compares the big table with a small one under the same load of the machine; at 0 pre-filled keys it shows the noise floor. ' +
      '(a) touches neither table.',
    '',
    throughputTable,
    '',
    'Disk per key: sizes divided by the live rows (the heap also holds the dead claim versions left by (b) until vacuum, a small share here):',
    '',
    sizeTable,
    '',
    targets.map((t) => `- ${t.target}: ${t.measured} — ${verdict(t.met)}`).join('\n'),
  ].join('\n');
  const data = bySize.map((s) => ({ ...s, results: Object.fromEntries(s.results) }));
  return { markdown, charts: [chart], targets, data };
}
