// Part 2 of the benchmarks: the shop's POST /payments over HTTP, bare, behind
// our Express layer and behind the usual Redis middleware, first executions
// and replays. Every round measures every scenario, bare included, so each
// ratio compares numbers taken seconds apart on the same machine, not across
// runs. `npm run bench -- --only=http` runs it alone into the report;
// `npx tsx bench/http.ts [--quick]` prints just the markdown table.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { ChartPanel } from './chart.js';
import { PAYMENT_ROUTES, type Variant } from './http-app.js';
import { countPayments, createBenchDatabase, dropBenchDatabase } from './http-database.js';
import { BENCH_USER, cycledKeys, freshKeys, load, PAYMENT_BODY, type LoadResult } from './http-load.js';
import { startBenchServer } from './http-server-process.js';
import { httpBenchTable } from './http-table.js';
import type { BenchContext, BenchModule, ModuleReport } from './module.js';
import { median } from './stats.js';

export interface HttpBenchOptions {
  /** A PostgreSQL server; the bench creates and drops its own database there. */
  databaseUrl: string;
  /** (Default: redis://127.0.0.1:6379) */
  redisUrl?: string;
  /** Concurrent HTTP connections. (Default: 32) */
  connections?: number;
  /** Length of each measurement. (Default: 5) */
  seconds?: number;
  /** Rounds of all scenarios; results are medians over them. (Default: 3) */
  rounds?: number;
  /** Progress lines. (Default: none) */
  log?: (line: string) => void;
}

/** One scenario in one round. */
export interface HttpRound extends LoadResult {
  /** Payments written during the measurement: one per 2xx first, none for replays. */
  writes: number;
  /** CPU per 2xx answer, in µs: the server process, and all PostgreSQL processes; NaN without /proc. */
  nodeCpuUs: number;
  pgCpuUs: number;
}

export interface HttpBenchResult {
  name: string;
  /** Median over rounds of 2xx answers per second. */
  rps: number;
  /** Median over rounds, in milliseconds. */
  p50: number;
  p99: number;
  /** Median over rounds of rps / bare rps in the same round. */
  ratio: number;
  rounds: HttpRound[];
}

interface Scenario {
  name: string;
  variant: Variant;
  replay: boolean;
}

const VARIANTS = Object.keys(PAYMENT_ROUTES) as Variant[];

const SCENARIOS: readonly Scenario[] = [
  { name: 'bare', variant: 'bare', replay: false },
  { name: 'ours', variant: 'ours', replay: false },
  { name: 'plain', variant: 'plain', replay: false },
  { name: 'redis', variant: 'redis', replay: false },
  { name: 'handwritten', variant: 'handwritten', replay: false },
  { name: 'ours replay', variant: 'ours', replay: true },
  { name: 'plain replay', variant: 'plain', replay: true },
  { name: 'redis replay', variant: 'redis', replay: true },
  { name: 'handwritten replay', variant: 'handwritten', replay: true },
];

export const DEFAULT_SERVER = 'postgres://postgres@127.0.0.1:5432/test';
const DEFAULT_REDIS = 'redis://127.0.0.1:6379';
// Enough to keep 2 cores of Postgres busy, few enough for a server others share.
const POOL_SIZE = 16;
const REPLAY_KEYS = 200;
const WARMUP_SECONDS = 1;
// autocannon hangs up at the deadline while the server still finishes what it
// was sent: let those land before counting writes or starting the next run.
const SETTLE_MS = 500;

export async function runHttpBench(options: HttpBenchOptions): Promise<HttpBenchResult[]> {
  const connections = options.connections ?? 32;
  const seconds = options.seconds ?? 5;
  const rounds = options.rounds ?? 3;
  const log = options.log ?? (() => {});
  const redisUrl = options.redisUrl ?? DEFAULT_REDIS;
  const runId = randomBytes(4).toString('hex');
  const redisPrefix = `bench-http:${runId}:`;

  const databaseUrl = await createBenchDatabase(options.databaseUrl);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const server = await startBenchServer({ databaseUrl, redisUrl, redisPrefix, poolSize: POOL_SIZE });
    try {
      const urlOf = (variant: Variant) => server.url + PAYMENT_ROUTES[variant];
      const keys = freshKeys(`${runId}-fresh`);
      log(`warming up ${WARMUP_SECONDS} s per route`);
      for (const variant of VARIANTS) {
        await load({ url: urlOf(variant), connections, seconds: WARMUP_SECONDS, nextKey: keys });
        await sleep(SETTLE_MS);
      }
      // Keys of their own per route: ours and plain share the key table, and the
      // fingerprint covers the path, so a shared key would answer 422.
      const completed = new Map<Variant, string[]>();
      for (const variant of VARIANTS.filter((v) => v !== 'bare')) {
        completed.set(variant, Array.from({ length: REPLAY_KEYS }, (_, i) => `${runId}-done-${variant}-${i}`));
        await completeKeys(urlOf(variant), completed.get(variant)!);
      }

      const measured = new Map<string, HttpRound[]>(SCENARIOS.map((s) => [s.name, []]));
      for (let round = 0; round < rounds; round++) {
        // Rotating the order spreads drift (a neighbour's load, autovacuum) over all scenarios.
        const order = SCENARIOS.map((_, i) => SCENARIOS[(i + round) % SCENARIOS.length]!);
        for (const scenario of order) {
          const before = await countPayments(pool, scenario.variant);
          const nextKey = scenario.replay ? cycledKeys(completed.get(scenario.variant)!) : keys;
          const cpuBefore = cpuTicks(server.pid);
          const result = await load({ url: urlOf(scenario.variant), connections, seconds, nextKey });
          const cpuAfter = cpuTicks(server.pid);
          await sleep(SETTLE_MS);
          const writes = (await countPayments(pool, scenario.variant)) - before;
          const answers = result.rps * seconds;
          const perAnswer = (ms: number) => (ms * 1000) / answers;
          measured.get(scenario.name)!.push({
            ...result,
            writes,
            nodeCpuUs: perAnswer(cpuAfter.nodeMs - cpuBefore.nodeMs),
            pgCpuUs: perAnswer(cpuAfter.pgMs - cpuBefore.pgMs),
          });
          log(`round ${round + 1}/${rounds} ${scenario.name}: ${result.rps.toFixed(0)} req/s, p99 ${result.p99} ms`);
        }
      }
      return summarise(measured);
    } finally {
      await server.stop();
    }
  } finally {
    await Promise.allSettled([pool.end(), deleteKeys(redis, redisPrefix).finally(() => redis.quit())]);
    await dropBenchDatabase(options.databaseUrl);
  }
}

/** CPU time so far of the server process and of every PostgreSQL process, from /proc (NaN where it cannot be read). */
function cpuTicks(serverPid: number | undefined): { nodeMs: number; pgMs: number } {
  const ms = (stat: string) => {
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, USER_HZ = 100
  };
  try {
    let pgMs = 0;
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) === 'postgres') pgMs += ms(stat);
      } catch {
        // The process ended while we looked.
      }
    }
    return { nodeMs: serverPid === undefined ? Number.NaN : ms(readFileSync(`/proc/${serverPid}/stat`, 'utf8')), pgMs };
  } catch {
    return { nodeMs: Number.NaN, pgMs: Number.NaN };
  }
}

function summarise(measured: Map<string, HttpRound[]>): HttpBenchResult[] {
  const bare = measured.get('bare')!;
  return SCENARIOS.map(({ name }) => {
    const rounds = measured.get(name)!;
    return {
      name,
      rps: median(rounds.map((r) => r.rps)),
      p50: median(rounds.map((r) => r.p50)),
      p99: median(rounds.map((r) => r.p99)),
      ratio: median(rounds.map((r, i) => r.rps / bare[i]!.rps)),
      rounds,
    };
  });
}

/** Runs each key once, so the replay scenarios only ever meet completed keys. */
async function completeKeys(url: string, keys: readonly string[]): Promise<void> {
  for (const key of keys) {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': BENCH_USER, 'idempotency-key': key },
      body: PAYMENT_BODY,
    });
    await response.arrayBuffer();
    if (response.status !== 201) throw new Error(`completing key ${key} on ${url} answered ${response.status}`);
  }
}

async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (found.length) await redis.unlink(...found);
    cursor = next;
  } while (cursor !== '0');
}

export const httpModule: BenchModule = {
  id: 'http',
  part: 2,
  title: 'HTTP level: the shop\'s POST /payments',
  async run({ options, env, log }: BenchContext): Promise<ModuleReport> {
    const results = await runHttpBench({
      // Its own database on the same server: the shop's tables, not the bench's.
      databaseUrl: env.adminUrl,
      redisUrl: env.redisUrl,
      connections: options.httpConnections,
      seconds: options.httpSeconds,
      rounds: options.rounds,
      log: (line) => log(`  ${line}`),
    });
    return httpReport(results, options.httpConnections, options.httpSeconds);
  },
};

function httpReport(results: readonly HttpBenchResult[], connections: number, seconds: number): ModuleReport {
  const byName = new Map(results.map((r) => [r.name, r]));
  const ratioOf = (name: string) => `${byName.get(name)!.ratio.toFixed(2)}x`;
  const replayWrites = ['ours replay', 'plain replay', 'redis replay', 'handwritten replay'].reduce((n, name) => n + byName.get(name)!.rounds.reduce((m, r) => m + r.writes, 0), 0);
  const markdown = [
    `autocannon, ${connections} connections, ${results[0]!.rounds.length} rounds × ${seconds} s per scenario (order rotated per round), ` +
      `one Express process with a pool of ${POOL_SIZE} connections, the same JSON body validated the same way on every route. ` +
      'A first execution sends a new Idempotency-Key per request; a replay cycles through completed keys. ' +
      '`× bare` is the ratio to the bare route in the same round.',
    '',
    httpBenchTable(results),
    '',
    `- **bare**: the shop's payment INSERT, one statement, no key. **ours**: \`idempotent()\` from \`drizzle-idempotency/express\`: ` +
      'the lookup, then BEGIN with the claim, the INSERT, the store with COMMIT (6 statements in 4 round trips, the library\'s as named statements); a replay is the lookup alone. ' +
      '**plain**: the same with both defaults switched off, `prepare: false` on a pool created with `pipeline: false`: unnamed statements, one round trip each (what 0.1 did by default). ' +
      '**redis**: GET, SET NX EX, the INSERT, SET EX 24 h. ' +
      '**handwritten**: the reference, raw pg written by hand: BEGIN, INSERT key ON CONFLICT DO NOTHING, the INSERT, UPDATE key, COMMIT (5 round trips); a replay is BEGIN, the claim, a SELECT, COMMIT.',
    `- Here ours ran first executions at ${ratioOf('ours')} of bare and replays at ${ratioOf('ours replay')}; plain, ${ratioOf('plain')} and ${ratioOf('plain replay')}; ` +
      `the Redis middleware at ${ratioOf('redis')} and ${ratioOf('redis replay')}. ` +
      'Bare is a single-statement autocommit route, so it sets a high bar: the library-level ratios (part 1) wrap a five-statement transaction.',
    `- Payments written by replays: ${replayWrites} (must be 0: a replay answers from the stored response).`,
  ].join('\n');
  const chart: ChartPanel = {
    title: `HTTP POST /payments, ${connections} connections`,
    yLabel: 'requests per second (2xx)',
    series: [
      { id: 'bare', label: 'bare', color: '#6b7280' },
      { id: 'ours', label: 'ours', color: '#2563eb' },
      { id: 'plain', label: 'ours, defaults off', color: '#7c3aed' },
      { id: 'redis', label: 'Redis middleware', color: '#dc2626' },
      { id: 'handwritten', label: 'hand-written pg', color: '#111827' },
    ],
    groups: [
      { label: 'first execution', names: ['bare', 'ours', 'plain', 'redis', 'handwritten'] },
      { label: 'replay', names: ['ours replay', 'plain replay', 'redis replay', 'handwritten replay'] },
    ].map(({ label, names }) => ({
      label,
      bars: names.map((name) => {
        const r = byName.get(name)!;
        const rps = r.rounds.map((x) => x.rps);
        return { series: name.split(' ')[0]!, value: r.rps, low: Math.min(...rps), high: Math.max(...rps) };
      }),
    })),
  };
  // Paired per round, as every ratio here.
  const paired = (x: string, y: string) => {
    const xs = byName.get(x)!.rounds;
    const ys = byName.get(y)!.rounds;
    return median(xs.map((r, i) => r.rps / ys[i]!.rps));
  };
  const oursOverHand = paired('ours', 'handwritten');
  const oursOverRedis = paired('ours', 'redis');
  const replay = byName.get('ours replay')!.ratio;
  const targets = [
    { target: 'HTTP first execution, defaults: at least the hand-written pg route', measured: `${oursOverHand.toFixed(2)}x of it`, met: oursOverHand >= 1 },
    { target: 'stretch: HTTP first execution, defaults: 0.80x the Redis middleware', measured: `${oursOverRedis.toFixed(2)}x of it`, met: oursOverRedis >= 0.8 },
    { target: 'HTTP replay, defaults: at least 1.5x the bare route', measured: `${replay.toFixed(2)}x`, met: replay >= 1.5 },
  ];
  return { markdown, charts: [chart], targets, data: results };
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const options = { connections: 32, seconds: quick ? 2 : 5, rounds: quick ? 1 : 3 };
  const results = await runHttpBench({
    ...options,
    databaseUrl: process.env.DATABASE_URL ?? DEFAULT_SERVER,
    redisUrl: process.env.REDIS_URL ?? DEFAULT_REDIS,
    log: (line) => console.error(line),
  });
  console.log(`POST /payments over HTTP: ${options.connections} connections, ${options.rounds} × ${options.seconds} s, ` +
    `${availableParallelism()} cores, Node ${process.version}, ${new Date().toISOString()}\n`);
  console.log(httpBenchTable(results));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
