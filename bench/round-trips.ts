// Part 3: statements sent to Postgres per operation, counted at the pg
// client (every query call of the pool's clients passes a tap) and checked
// against the server's own transaction counters in pg_stat_database. On
// node-postgres each statement is one round trip: it waits for the answer
// before sending the next, except on a pool in pipeline mode, where a
// statement sent while another is still unanswered shares its round trip.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { Redis } from 'ioredis';
import pg from 'pg';
import { lookupReplay, withIdempotencyOutcome } from '../src/index.js';
import { charge, randomSku, type Charge } from './business.js';
import { BENCH_DATABASE } from './environment.js';
import { table, verdict } from './format.js';
import { sleep } from './load.js';
import type { BenchContext, BenchModule, ModuleReport, TargetCheck } from './module.js';
import { statementKind } from './pg-tap.js';
import { openPool } from './pools.js';
import { RESULT_TTL_SECONDS, withRedisIdempotency, type RedisIdempotencyOptions } from './redis-idempotency.js';
import { chargeIdempotently, createReplayKeys, idempotencyOptions, randomTenant, type ReplayKey } from './scenarios.js';
import { median } from './stats.js';

interface Deps {
  db: NodePgDatabase;
  redis: Redis;
  redisOptions: RedisIdempotencyOptions;
}

interface Variant {
  id: string;
  label: string;
  /** The pool's `pipeline` option (unset: the library's default, pipeline mode on the connections it checks out). */
  pipeline?: boolean;
  /** Uncounted set-up, on its own connections: the completed keys a replay needs. */
  prepare?(deps: Deps, count: number): Promise<ReplayKey[]>;
  operation(deps: Deps, prepared: ReplayKey | undefined): Promise<void>;
}

const neverRuns = () => Promise.reject(new Error('a completed key ran its function again'));

async function redisFirst({ db, redis, redisOptions }: Deps, key: string, sku: string) {
  return withRedisIdempotency(redis, key, () => db.transaction((tx) => charge(tx, key, sku)), redisOptions);
}

const VARIANTS: readonly Variant[] = [
  {
    id: 'a',
    label: '(a) bare transaction',
    operation: async ({ db }) => void (await db.transaction((tx) => charge(tx, randomUUID(), randomSku()))),
  },
  {
    id: 'b',
    label: '(b) withIdempotency, first execution',
    operation: async ({ db }) => void (await chargeIdempotently(db, randomUUID(), randomTenant(), randomSku())),
  },
  {
    id: 'b-lookup',
    label: '(b) first execution with lookupFirst: true',
    operation: async ({ db }) => void (await chargeIdempotently(db, randomUUID(), randomTenant(), randomSku(), { lookupFirst: true })),
  },
  {
    id: 'c',
    label: '(c) replay, lookupFirst: true',
    prepare: ({ db }, count) => createReplayKeys(db, count),
    operation: async ({ db }, hit) => {
      const outcome = await withIdempotencyOutcome<NodePgDatabase, Charge>(
        db,
        hit!.key,
        neverRuns,
        idempotencyOptions(hit!.scope, hit!.sku, { lookupFirst: true }),
      );
      if (!outcome.replayed) throw new Error('not replayed');
    },
  },
  {
    id: 'c-lookupReplay',
    label: '(c) replay, lookupReplay()',
    prepare: ({ db }, count) => createReplayKeys(db, count),
    operation: async ({ db }, hit) => {
      if (!(await lookupReplay(db, hit!.key, idempotencyOptions(hit!.scope, hit!.sku)))) throw new Error('not found');
    },
  },
  {
    id: 'c-in-transaction',
    label: 'replay without lookupFirst (inside a transaction)',
    prepare: ({ db }, count) => createReplayKeys(db, count),
    operation: async ({ db }, hit) => {
      const outcome = await withIdempotencyOutcome<NodePgDatabase, Charge>(db, hit!.key, neverRuns, idempotencyOptions(hit!.scope, hit!.sku));
      if (!outcome.replayed) throw new Error('not replayed');
    },
  },
  {
    id: 'e',
    label: '(e) first execution, defaults off: prepare: false, pool with pipeline: false',
    pipeline: false,
    operation: async ({ db }) => void (await chargeIdempotently(db, randomUUID(), randomTenant(), randomSku(), { prepare: false })),
  },
  {
    id: 'f',
    label: '(f) replay, lookupFirst and prepare: false',
    prepare: ({ db }, count) => createReplayKeys(db, count),
    operation: async ({ db }, hit) => {
      const options = idempotencyOptions(hit!.scope, hit!.sku, { lookupFirst: true, prepare: false });
      const outcome = await withIdempotencyOutcome<NodePgDatabase, Charge>(db, hit!.key, neverRuns, options);
      if (!outcome.replayed) throw new Error('not replayed');
    },
  },
  {
    id: 'd',
    label: '(d) Redis middleware, first execution',
    operation: async (deps) => void (await redisFirst(deps, randomUUID(), randomSku())),
  },
  {
    id: 'd-replay',
    label: 'Redis middleware, replay',
    prepare: async (deps, count) => {
      const keys: ReplayKey[] = [];
      for (let i = 0; i < count; i++) {
        const entry = { key: randomUUID(), scope: '', sku: randomSku() };
        await redisFirst(deps, entry.key, entry.sku);
        keys.push(entry);
      }
      return keys;
    },
    operation: async (deps, hit) => {
      const outcome = await redisFirst(deps, hit!.key, hit!.sku);
      if (!outcome.replayed) throw new Error('not replayed');
    },
  },
];

interface Count {
  id: string;
  label: string;
  statementsPerOperation: number;
  /** Times the client waited for Postgres: statements sent while none was unanswered. */
  roundTripsPerOperation: number;
  /** Fewest and most statements any single operation sent. */
  range: [number, number];
  sequence: string[];
  transactionsPerOperation: number;
  redisCommandsPerOperation: number;
  /** Median duration of each kind of statement, ms, one connection. */
  statementMs: Record<string, number>;
}

export const roundTripsModule: BenchModule = {
  id: 'round-trips',
  part: 3,
  title: 'Statements per operation (counted)',
  async run(ctx: BenchContext): Promise<ModuleReport> {
    const { env, options, log } = ctx;
    const admin = new pg.Client({ connectionString: env.adminUrl });
    await admin.connect();
    const redis = new Redis(env.redisUrl);
    let redisCommands = 0;
    const sendCommand = redis.sendCommand.bind(redis);
    redis.sendCommand = ((...args: Parameters<Redis['sendCommand']>) => {
      redisCommands++;
      return sendCommand(...args);
    }) as Redis['sendCommand'];
    const redisOptions = { prefix: env.redisPrefix, lockTtlSeconds: 30, resultTtlSeconds: RESULT_TTL_SECONDS };

    try {
      // Opening and closing a pool costs transactions of its own (backend
      // start-up, the pid query): measured once, subtracted from every count.
      const overhead = await serverTransactions(admin, async () => (await openPool(env.url, 1)).close());
      const counts: Count[] = [];
      for (const variant of VARIANTS) {
        const n = options.countOperations;
        let prepared: ReplayKey[] = [];
        if (variant.prepare) {
          const setup = await openPool(env.url, 4);
          prepared = await variant.prepare({ db: setup.db, redis, redisOptions }, n).finally(() => setup.close());
        }
        let counting = false;
        let inFlight = 0;
        let roundTrips = 0;
        let current: string[] = [];
        const perOperation: string[][] = [];
        const durations = new Map<string, number[]>();
        const redisBefore = { n: 0 };
        const transactions = await serverTransactions(admin, async () => {
          const counted = await openPool(env.url, 1, (text, send, pipelining) => {
            if (!counting) return send();
            const kind = statementKind(text);
            current.push(kind);
            // A statement shares a round trip only when the client pipelines and another still waits.
            if (inFlight++ === 0 || !pipelining) roundTrips++;
            const started = performance.now();
            return send().finally(() => {
              inFlight--;
              const list = durations.get(kind) ?? [];
              list.push(performance.now() - started);
              durations.set(kind, list);
            });
          }, { pipeline: variant.pipeline });
          try {
            const deps = { db: counted.db, redis, redisOptions };
            counting = true;
            redisBefore.n = redisCommands;
            for (let i = 0; i < n; i++) {
              current = [];
              await variant.operation(deps, prepared[i]);
              perOperation.push(current);
            }
            counting = false;
          } finally {
            await counted.close();
          }
        });
        const sizes = perOperation.map((s) => s.length);
        const count: Count = {
          id: variant.id,
          label: variant.label,
          statementsPerOperation: sizes.reduce((a, b) => a + b, 0) / n,
          roundTripsPerOperation: roundTrips / n,
          range: [Math.min(...sizes), Math.max(...sizes)],
          sequence: perOperation.at(-1)!,
          transactionsPerOperation: (transactions - overhead) / n,
          redisCommandsPerOperation: (redisCommands - redisBefore.n) / n,
          statementMs: Object.fromEntries([...durations].map(([kind, list]) => [kind, median(list)])),
        };
        counts.push(count);
        log(`  ${variant.label}: ${count.statementsPerOperation} statements, ${count.transactionsPerOperation.toFixed(2)} transactions, ${count.redisCommandsPerOperation} Redis commands per operation`);
      }
      return report(counts, options.countOperations);
    } finally {
      redis.disconnect();
      await admin.end();
    }
  },
};

/** Transactions the server counted in the bench database while `fn` ran. */
async function serverTransactions(admin: pg.Client, fn: () => Promise<void>): Promise<number> {
  const before = await settledTransactionCount(admin);
  await fn();
  return (await settledTransactionCount(admin)) - before;
}

// A backend reports its counters when it exits; wait until none is left in
// the bench database, so every transaction so far is in the total.
async function settledTransactionCount(admin: pg.Client): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const { rows } = await admin.query<{ n: string }>('select count(*) as n from pg_stat_activity where datname = $1', [BENCH_DATABASE]);
    if (Number(rows[0]!.n) === 0) break;
    await sleep(20);
  }
  await admin.query('select pg_stat_clear_snapshot()');
  const { rows } = await admin.query<{ n: string }>(
    'select xact_commit + xact_rollback as n from pg_stat_database where datname = $1',
    [BENCH_DATABASE],
  );
  return Number(rows[0]!.n);
}

function report(counts: Count[], n: number): ModuleReport {
  const byId = new Map(counts.map((c) => [c.id, c]));
  const a = byId.get('a')!;
  const b = byId.get('b')!;
  const c = byId.get('c')!;
  const statements = (x: Count) => (x.range[0] === x.range[1] ? String(x.range[0]) : `${x.statementsPerOperation} (${x.range[0]}–${x.range[1]})`);
  const countTable = table(
    ['operation', 'statements to Postgres', 'round trips', 'sequence', 'Postgres transactions (server count)', 'Redis commands'],
    counts.map((x) => [
      x.label,
      statements(x),
      String(+x.roundTripsPerOperation.toFixed(2)),
      x.sequence.join(' → ') || '–',
      x.transactionsPerOperation.toFixed(2),
      x.redisCommandsPerOperation.toFixed(0),
    ]),
  );
  const kinds = Object.keys(b.statementMs);
  const statementTable = table(
    ['statement (in (b), 1 connection)', 'median µs, send to answer'],
    kinds.map((k) => [k, String(Math.round(b.statementMs[k]! * 1000))]),
  );
  const added = b.statementsPerOperation - a.statementsPerOperation;
  const targets: TargetCheck[] = [
    { target: 'first execution adds at most 2 statements to the business transaction', measured: `+${added} (${b.statementsPerOperation} vs ${a.statementsPerOperation})`, met: added <= 2 },
    {
      target: 'replay: one statement, no transaction of its own',
      measured: `${c.statementsPerOperation} statement, ${c.transactionsPerOperation.toFixed(2)} server transactions per replay`,
      met: c.statementsPerOperation === 1 && Math.abs(c.transactionsPerOperation - 1) < 0.05,
    },
  ];
  const markdown = [
    `Counted over ${n} operations per row on one connection: every \`query\` call of the pool's clients passes a tap that records it. ` +
      'The server-side column is the change of `xact_commit + xact_rollback` in `pg_stat_database` for the bench database over the same operations ' +
      '(connection set-up subtracted): a statement outside BEGIN counts as a transaction of its own, so a one-statement replay shows 1.00. ' +
      'node-postgres sends one statement per round trip, except on a pool in pipeline mode, and except BEGIN and COMMIT where the library sends them inside ' +
      'the claim and the store (under one Sync; from the second call on a connection): the round-trip column counts the statements sent while no other was ' +
      'waiting for its answer.',
    '',
    countTable,
    '',
    `Where the time of a first execution goes on one connection (loopback, so mostly round trip and server CPU; ${n} operations, so a busy neighbour shows here first):`,
    '',
    statementTable,
    '',
    targets.map((t) => `- ${t.target}: ${t.measured} — ${verdict(t.met)}`).join('\n'),
  ].join('\n');
  return { markdown, charts: [], targets, data: counts };
}
