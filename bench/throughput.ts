// Part 1: transactions per second of the scenarios at 1, 8 and 32
// connections, each as a ratio to the bare transaction of the same round.
import { Redis } from 'ioredis';
import pg from 'pg';
import type { ChartPanel } from './chart.js';
import type { CpuUse } from './cpu.js';
import { ms, rate, rateSpread, ratioSpread, table, verdict } from './format.js';
import type { BenchContext, BenchModule, ModuleReport, TargetCheck } from './module.js';
import { openPool } from './pools.js';
import { RESULT_TTL_SECONDS } from './redis-idempotency.js';
import { measureRounds, pairedRatio, perOperation, rates, type RoundResults } from './rounds.js';
import { createReplayKeys, SCENARIOS, type ScenarioId } from './scenarios.js';
import { median } from './stats.js';
import { sleep } from './load.js';

export const SERIES_COLORS: Record<ScenarioId, string> = { a: '#6b7280', b: '#2563eb', c: '#16a34a', d: '#dc2626', e: '#7c3aed', f: '#0d9488', g: '#111827' };

export const throughputModule: BenchModule = {
  id: 'throughput',
  part: 1,
  title: 'Library-level throughput',
  async run(ctx: BenchContext): Promise<ModuleReport> {
    const { options, env, log } = ctx;
    const redis = new Redis(env.redisUrl);
    try {
      const setup = await openPool(env.url, 8);
      const replayKeys = await createReplayKeys(setup.db, options.replayKeys).finally(() => setup.close());
      log(`  ${replayKeys.length} completed keys ready for replays`);

      const hotBefore = await storeUpdateStats(env.url);
      const byConnections = new Map<number, RoundResults>();
      for (const connections of options.connections) {
        const pool = await openPool(env.url, connections);
        const plainPool = await openPool(env.url, connections, undefined, { pipeline: false });
        try {
          byConnections.set(
            connections,
            await measureRounds({
              pool,
              plainPool,
              scenarios: SCENARIOS,
              context: { redis, redisOptions: { prefix: env.redisPrefix, lockTtlSeconds: 30, resultTtlSeconds: RESULT_TTL_SECONDS }, replayKeys },
              rounds: options.rounds,
              seconds: options.seconds,
              warmupSeconds: options.warmupSeconds,
              log,
              label: `${connections} connection${connections === 1 ? '' : 's'}`,
            }),
          );
        } finally {
          await Promise.all([pool.close(), plainPool.close()]);
        }
      }
      const hotAfter = await storeUpdateStats(env.url);
      const hot = { updates: hotAfter.updates - hotBefore.updates, hotUpdates: hotAfter.hotUpdates - hotBefore.hotUpdates };
      return report(ctx, byConnections, hot);
    } finally {
      redis.disconnect();
    }
  },
};

interface UpdateStats {
  updates: number;
  hotUpdates: number;
}

/** How many store UPDATEs stayed on their page (HOT) and skipped both index inserts. */
async function storeUpdateStats(url: string): Promise<UpdateStats> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // Backends report their counters when they exit: wait for the pools to be gone.
    for (let i = 0; i < 100; i++) {
      const { rows } = await client.query<{ n: string }>(
        'select count(*) as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
      );
      if (Number(rows[0]!.n) === 0) break;
      await sleep(20);
    }
    await client.query('select pg_stat_clear_snapshot()');
    const { rows } = await client.query<{ n_tup_upd: string; n_tup_hot_upd: string }>(
      `select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables where relname = 'idempotency_keys'`,
    );
    return { updates: Number(rows[0]?.n_tup_upd ?? 0), hotUpdates: Number(rows[0]?.n_tup_hot_upd ?? 0) };
  } finally {
    await client.end();
  }
}

function report(ctx: BenchContext, byConnections: Map<number, RoundResults>, hot: UpdateStats): ModuleReport {
  const { options } = ctx;
  const connections = [...byConnections.keys()];
  const top = Math.max(...connections);
  const topResults = byConnections.get(top)!;
  const labelOf = (id: string) => `(${id}) ${SCENARIOS.find((s) => s.id === id)!.label}`;

  const rateTable = table(
    ['scenario', ...connections.map((c) => `${c} conn. tx/s`)],
    SCENARIOS.map((s) => [labelOf(s.id), ...connections.map((c) => rateSpread(rates(byConnections.get(c)!, s.id)))]),
  );
  const ratioRows = SCENARIOS.filter((s) => s.id !== 'a').map((s) => [
    `${labelOf(s.id)} ÷ (a)`,
    ...connections.map((c) => ratioSpread(pairedRatio(byConnections.get(c)!, s.id, 'a'))),
  ]);
  for (const [x, y] of [['b', 'g'], ['b', 'd'], ['b', 'e'], ['c', 'f']] as const) {
    ratioRows.push([`(${x}) ÷ (${y})`, ...connections.map((c) => ratioSpread(pairedRatio(byConnections.get(c)!, x, y)))]);
  }
  const ratioTable = table(['ratio, paired per round', ...connections.map((c) => `${c} conn.`)], ratioRows);

  const latencyTable = table(
    ['scenario', ...connections.map((c) => `${c} conn. p50 / p99 ms`)],
    SCENARIOS.map((s) => [
      labelOf(s.id),
      ...connections.map((c) => {
        const results = byConnections.get(c)!.get(s.id)!;
        return `${ms(median(results.map((r) => r.p50Ms)))} / ${ms(median(results.map((r) => r.p99Ms)))}`;
      }),
    ]),
  );

  const cpuMicros = (id: string, pick: (cpu: CpuUse) => number) =>
    perOperation(topResults, id, (r) => (r.cpu ? pick(r.cpu) * 1000 : undefined)) ?? NaN;
  const hasCpu = topResults.get('a')!.some((r) => r.cpu !== undefined);
  const columns: [string, (c: CpuUse) => number][] = [
    ['Node', (c) => c.nodeMs],
    ['PG backends', (c) => c.postgresMs],
    ['PG background', (c) => c.postgresBackgroundMs],
    ['Redis', (c) => c.redisMs],
    ['ours in all', (c) => c.nodeMs + c.postgresMs + c.postgresBackgroundMs + c.redisMs],
    ['interrupts', (c) => c.interruptsMs],
    ['steal', (c) => c.stealMs],
    ['other processes', (c) => c.otherMs],
    ['idle', (c) => c.idleMs],
  ];
  const cpuTable = hasCpu
    ? table(
        ['µs of CPU per operation', ...columns.map(([name]) => name)],
        SCENARIOS.map((s) => [labelOf(s.id), ...columns.map(([, pick]) => rate(cpuMicros(s.id, pick)))]),
      )
    : '_CPU profile unavailable: the servers are not processes of this machine._';

  const b = pairedRatio(topResults, 'b', 'a');
  const bd = pairedRatio(topResults, 'b', 'd');
  const c = pairedRatio(topResults, 'c', 'a');
  const g = pairedRatio(topResults, 'g', 'a');
  const targets: TargetCheck[] = [
    {
      target: `(b) within 0.05 of the hand-written reference (g), both ÷ (a), at ${top} connections`,
      measured: `${ratioSpread(b)} against ${ratioSpread(g)}`,
      met: b.median >= g.median - 0.05,
    },
    { target: `(b) ≥ 0.70x (a) at ${top} connections`, measured: ratioSpread(b), met: b.median >= 0.7 },
    { target: `stretch: (b) ≥ 0.95x (d) at ${top} connections`, measured: ratioSpread(bd), met: bd.median >= 0.95 },
    { target: `(c) ≥ 3x (a) at ${top} connections`, measured: ratioSpread(c), met: c.median >= 3 },
  ];

  const chart: ChartPanel = {
    title: 'Part 1: transactions per second',
    yLabel: 'tx/s (median, whisker min–max)',
    series: SCENARIOS.map((s) => ({ id: s.id, label: `(${s.id}) ${s.short}`, color: SERIES_COLORS[s.id as ScenarioId] })),
    groups: connections.map((conn) => ({
      label: `${conn} connection${conn === 1 ? '' : 's'}`,
      bars: SCENARIOS.map((s) => {
        const r = rates(byConnections.get(conn)!, s.id);
        return { series: s.id, value: r.median, low: r.min, high: r.max };
      }),
    })),
  };

  const hotShare = hot.updates === 0 ? NaN : hot.hotUpdates / hot.updates;
  const ours = (id: string) => cpuMicros(id, columns[4]![1]);
  const machine = (id: string) => cpuMicros(id, (c) => c.nodeMs + c.postgresMs + c.postgresBackgroundMs + c.redisMs + c.interruptsMs + c.stealMs + c.otherMs + c.idleMs);
  const idleShare = cpuMicros('b', (c) => c.idleMs) / machine('b');
  const cpuReading = hasCpu
    ? `With the cores ${(100 - idleShare * 100).toFixed(0)}% busy during (b), throughput follows CPU per operation: ` +
      `(a) takes ${rate(ours('a'))} µs, (b) ${rate(ours('b'))} µs and (d) ${rate(ours('d'))} µs of Node + Postgres + Redis CPU, ` +
      `so CPU alone predicts (b) ÷ (a) ≈ ${(ours('a') / ours('b')).toFixed(2)} and (b) ÷ (d) ≈ ${(ours('d') / ours('b')).toFixed(2)} ` +
      `(measured ${ratioSpread(b)} and ${ratioSpread(bd)}); a replay (c) takes ${rate(ours('c'))} µs, so CPU predicts (c) ÷ (a) ≈ ${(ours('a') / ours('c')).toFixed(2)} ` +
      `(measured ${ratioSpread(c)}). Where the CPU goes and what would cut it: [bench/README.md](bench/README.md#findings).`
    : '';
  const markdown = [
    `Closed loop: as many workers as connections, each repeating one operation; a pool of exactly that many connections, opened before measuring. ` +
      `${options.rounds} rounds × ${options.seconds} s per cell after ${options.warmupSeconds} s of warm-up; every round measures the seven scenarios in a rotated order, ` +
      `and each ratio is taken within a round, then the median (min–max) over rounds is shown.`,
    '',
    '- **(a)** `db.transaction`: BEGIN, SELECT stock FOR UPDATE, UPDATE stock, INSERT charge, COMMIT (1000 SKUs drawn at random).',
    '- **(b)** the same function inside `withIdempotency(db, key, fn, { scope, fingerprint })` with a new random key: BEGIN, claim, the three statements, store, COMMIT.',
    `- **(c)** \`withIdempotencyOutcome(db, key, fn, { lookupFirst: true })\` on one of ${options.replayKeys} completed keys: one SELECT, no transaction, \`fn\` never runs.`,
    '- **(d)** Redis middleware around (a): GET key, SET key NX EX 30 (lock), the transaction, SET key result EX 86400; one shared ioredis connection.',
    '- **(e)** (b) with the node-postgres defaults switched off, as 0.1 ran it: `prepare: false` on a second pool of the same size created with `pipeline: false`, ' +
      'so every statement is parsed and planned on every call and travels alone (7 round trips). (b) itself runs the library\'s statements named and pipelined: 5 round trips.',
    '- **(f)** (c) with `prepare: false`.',
    '- **(g)** the reference: the same protocol written by hand in raw pg, BEGIN sent with the claim and the store with COMMIT as one string each, the same three business statements between.',
    '',
    rateTable,
    '',
    ratioTable,
    '',
    'Latency of one operation (median over rounds of each round\'s p50 and p99):',
    '',
    latencyTable,
    '',
    `**Profile at ${top} connections**: CPU time per operation (median over rounds), from /proc: Node is this process; PG backends the ${top} ` +
      'connections of the pool; PG background the WAL writer, checkpointer and the like; interrupts mostly loopback networking; steal the time the ' +
      'hypervisor gave elsewhere; other processes whatever else ran (other users of this shared machine); idle the cores\' unused time.',
    '',
    cpuTable,
    '',
    cpuReading,
    '',
    `Store UPDATEs of part 1 that were HOT (no new index entries, so the store adds no index work): ${Number.isFinite(hotShare) ? `${(hotShare * 100).toFixed(0)}%` : '–'} ` +
      `(${hot.hotUpdates.toLocaleString('en-US')} of ${hot.updates.toLocaleString('en-US')}).`,
    '',
    targets.map((t) => `- ${t.target}: ${t.measured} — ${verdict(t.met)}`).join('\n'),
  ].join('\n');

  const data = Object.fromEntries(
    [...byConnections].map(([conn, results]) => [conn, Object.fromEntries([...results].map(([id, rs]) => [id, rs]))]),
  );
  return { markdown, charts: [chart], targets, data: { byConnections: data, storeUpdates: hot } };
}
