// Part 4: does the key table slow down as it grows? (a), (b) and (c) at a
// fixed connection count with 0, 1M and 10M completed keys already in
// idempotency_keys, plus what a key costs on disk. (a) never touches the key
// table: it is the control that tells the table's growth from the machine's
// noise between sizes.
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import pg from 'pg';
import { AMOUNT, SKU_COUNT } from './business.js';
import type { ChartPanel } from './chart.js';
import { bytes, rateSpread, ratio, ratioSpread, rows as formatRows, table, verdict } from './format.js';
import type { BenchContext, BenchModule, ModuleReport, TargetCheck } from './module.js';
import { openPool } from './pools.js';
import { RESULT_TTL_SECONDS } from './redis-idempotency.js';
import { measureRounds, pairedRatio, rates, type RoundResults } from './rounds.js';
import { bare, createReplayKeys, firstExecution, replay, TENANT_COUNT } from './scenarios.js';
import { SERIES_COLORS } from './throughput.js';

const FILL_CHUNK = 250_000;
// Two sessions: the machine has two cores, and the fill is CPU bound.
const FILL_SESSIONS = 2;

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
      // Start from an empty table: earlier parts left their keys in it.
      await admin.query('truncate idempotency_keys');
      const setup = await openPool(env.url, 8);
      const replayKeys = await createReplayKeys(setup.db, options.replayKeys).finally(() => setup.close());
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
            scenarios: [bare, firstExecution, replay],
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
  const throughputTable = table(
    ['keys pre-filled', '(a) tx/s', '(b) tx/s', '(c) tx/s', '(b) ÷ (a)', '(c) ÷ (a)', 'fill + analyze + checkpoint'],
    bySize.map((s) => [
      formatRows(s.prefilled),
      rateSpread(rates(s.results, 'a')),
      rateSpread(rates(s.results, 'b')),
      rateSpread(rates(s.results, 'c')),
      ratioSpread(pairedRatio(s.results, 'b', 'a')),
      ratioSpread(pairedRatio(s.results, 'c', 'a')),
      s.prefilled === 0 ? '–' : `${s.fillSeconds.toFixed(0)} s`,
    ]),
  );
  const versusEmpty = (s: SizeResult, id: 'b' | 'c') => rates(s.results, id).median / rates(base.results, id).median;
  const normalised = (s: SizeResult, id: 'b' | 'c') =>
    pairedRatio(s.results, id, 'a').median / pairedRatio(base.results, id, 'a').median;
  const growthTable = table(
    ['keys pre-filled', '(b) vs empty', '(b) vs empty, (a)-normalised', '(c) vs empty', '(c) vs empty, (a)-normalised'],
    bySize.map((s) => [formatRows(s.prefilled), ratio(versusEmpty(s, 'b')), ratio(normalised(s, 'b')), ratio(versusEmpty(s, 'c')), ratio(normalised(s, 'c'))]),
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
    bySize.length < 2
      ? []
      : (['b', 'c'] as const).map((id) => ({
          target: `(${id}) at ${formatRows(last.prefilled)} keys ≥ 0.9x (${id}) at ${formatRows(base.prefilled)}`,
          measured: `${ratio(versusEmpty(last, id))} raw, ${ratio(normalised(last, id))} normalised by (a)`,
          // The machine drifts between sizes, in either direction: both readings must pass.
          met: Math.min(versusEmpty(last, id), normalised(last, id)) >= 0.9,
        }));
  const chart: ChartPanel = {
    title: `Part 4: growth, ${connections} connections`,
    yLabel: 'tx/s (median, whisker min–max)',
    series: [bare, firstExecution, replay].map((s) => ({ id: s.id, label: `(${s.id}) ${s.short}`, color: SERIES_COLORS[s.id] })),
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
      'completed responses, expiries spread over 24 h; two sessions in parallel), then ANALYZE and CHECKPOINT. Each size measures (a), (b) and (c) in paired rounds; ' +
      '(a) does not touch the key table, so "(a)-normalised" removes the machine\'s drift between sizes.',
    '',
    throughputTable,
    '',
    growthTable,
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

