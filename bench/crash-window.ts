// Part 5: the crash window. A process runs requests with one approach and is
// SIGKILLed at a chosen point; a client then retries every request with the
// same key until it gets an answer, and the database counts the charges.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { performance } from 'node:perf_hooks';
import { chargesPerRef, randomSku } from './business.js';
import { CRASH_SPEC_VARIABLE, isInFlight, request, type Approach, type CrashDeps, type CrashSpec, type KillPoint } from './crash-approaches.js';
import { ms, table, verdict } from './format.js';
import { sleep } from './load.js';
import type { BenchContext, BenchModule, ModuleReport, TargetCheck } from './module.js';
import { openPool } from './pools.js';
import { RESULT_TTL_SECONDS, type RedisIdempotencyOptions } from './redis-idempotency.js';
import { randomTenant, type ReplayKey } from './scenarios.js';
import { median } from './stats.js';

// Short, so the retrying client sees it expire within the bench's time; the
// outcome is the same with any TTL once the client retries after it.
const LOCK_TTL_SECONDS = 2;
const RETRY_DELAY_MS = 100;
const RETRY_LIMIT_MS = 30_000;
const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url));

const CASES: readonly { approach: Approach; point: KillPoint }[] = [
  { approach: 'redis', point: 'after-commit' },
  { approach: 'redis', point: 'before-commit' },
  { approach: 'library', point: 'after-commit' },
  { approach: 'library', point: 'before-commit' },
];

interface CaseResult {
  approach: Approach;
  point: KillPoint;
  processes: number;
  requests: number;
  chargesAfterKill: number;
  chargesAfterRetry: number;
  duplicated: number;
  missing: number;
  replayedOnRetry: number;
  medianRetryMs: number;
}

export const crashWindowModule: BenchModule = {
  id: 'crash-window',
  part: 5,
  title: 'Crash window',
  async run(ctx: BenchContext): Promise<ModuleReport> {
    const { env, options, log } = ctx;
    const redisOptions: RedisIdempotencyOptions = { prefix: env.redisPrefix, lockTtlSeconds: LOCK_TTL_SECONDS, resultTtlSeconds: RESULT_TTL_SECONDS };
    const redis = new Redis(env.redisUrl);
    const client = await openPool(env.url, options.crashKeysPerProcess * options.crashProcesses);
    const deps: CrashDeps = { db: client.db, redis, redisOptions };
    const results: CaseResult[] = [];
    try {
      for (const c of CASES) {
        const requests: ReplayKey[] = [];
        for (let p = 0; p < options.crashProcesses; p++) {
          // Distinct SKUs: a request parked before COMMIT holds its stock row, and
          // another request of the same process on that row would wait for ever.
          const skus = new Set<string>();
          while (skus.size < options.crashKeysPerProcess) skus.add(randomSku());
          const batch = [...skus].map((sku) => ({ key: randomUUID(), scope: randomTenant(), sku }));
          await runAndKill({ url: env.url, redisUrl: env.redisUrl, approach: c.approach, point: c.point, redisOptions, requests: batch });
          requests.push(...batch);
        }
        const refs = requests.map((r) => r.key);
        const afterKill = await chargesPerRef(client.pool, refs);
        const retries = await Promise.all(requests.map((r) => retryUntilAnswered(c.approach, deps, r)));
        const afterRetry = await chargesPerRef(client.pool, refs);
        const result: CaseResult = {
          ...c,
          processes: options.crashProcesses,
          requests: requests.length,
          chargesAfterKill: sum(afterKill.values()),
          chargesAfterRetry: sum(afterRetry.values()),
          duplicated: refs.filter((ref) => (afterRetry.get(ref) ?? 0) > 1).length,
          missing: refs.filter((ref) => (afterRetry.get(ref) ?? 0) === 0).length,
          replayedOnRetry: retries.filter((r) => r.replayed).length,
          medianRetryMs: median(retries.map((r) => r.ms)),
        };
        results.push(result);
        log(`  ${c.approach}, killed ${c.point}: ${result.duplicated} of ${result.requests} requests charged twice`);
      }
    } finally {
      redis.disconnect();
      await client.close();
    }
    return report(results);
  },
};

/** Starts a child on `spec`, waits until all its requests sit at the kill point, kills it. */
async function runAndKill(spec: CrashSpec): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: { ...process.env, [CRASH_SPEC_VARIABLE]: JSON.stringify(spec) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const parked = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => line === 'parked' && resolve());
    child.once('exit', (code) => reject(new Error(`crash child exited with ${code} before reaching ${spec.point}`)));
    setTimeout(() => reject(new Error(`crash child did not reach ${spec.point} within 30 s`)), 30_000).unref();
  });
  try {
    await parked;
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}

/** A client with the same key: retries while the key is in flight, as a 409 invites it to. */
async function retryUntilAnswered(approach: Approach, deps: CrashDeps, r: ReplayKey): Promise<{ replayed: boolean; ms: number }> {
  const started = performance.now();
  for (;;) {
    try {
      const outcome = await request(approach, deps, r);
      return { replayed: outcome.replayed, ms: performance.now() - started };
    } catch (error) {
      if (!isInFlight(error) || performance.now() - started > RETRY_LIMIT_MS) throw error;
      await sleep(RETRY_DELAY_MS);
    }
  }
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

const APPROACH_LABEL: Record<Approach, string> = { redis: 'Redis middleware', library: 'withIdempotency' };
const POINT_LABEL: Record<Approach, Record<KillPoint, string>> = {
  redis: {
    'after-commit': 'after the business COMMIT, before SET result',
    'before-commit': 'after the business statements, before COMMIT',
  },
  library: {
    'after-commit': 'after COMMIT succeeded, before the call returned',
    'before-commit': 'after the business statements and the store, before COMMIT',
  },
};

function report(results: CaseResult[]): ModuleReport {
  const resultTable = table(
    ['approach', 'SIGKILL', 'requests', 'charges after kill', 'charges after retry', 'charged twice', 'never charged', 'retry replayed', 'median retry wait ms'],
    results.map((r) => [
      APPROACH_LABEL[r.approach],
      POINT_LABEL[r.approach][r.point],
      String(r.requests),
      String(r.chargesAfterKill),
      String(r.chargesAfterRetry),
      r.duplicated > 0 ? `**${r.duplicated}**` : '0',
      String(r.missing),
      String(r.replayedOnRetry),
      ms(r.medianRetryMs),
    ]),
  );
  const ours = results.filter((r) => r.approach === 'library');
  const redisWindow = results.find((r) => r.approach === 'redis' && r.point === 'after-commit');
  const oursDuplicates = ours.reduce((n, r) => n + r.duplicated + r.missing, 0);
  const oursRequests = ours.reduce((n, r) => n + r.requests, 0);
  const targets: TargetCheck[] = [
    {
      target: 'crash window: 0 duplicate effects for withIdempotency',
      measured: `${oursDuplicates} of ${oursRequests} requests charged twice or never` +
        (redisWindow ? `; Redis middleware: ${redisWindow.duplicated} of ${redisWindow.requests} charged twice` : ''),
      met: oursDuplicates === 0,
    },
  ];
  const processes = results[0]?.processes ?? 0;
  const perProcess = results[0] ? results[0].requests / Math.max(1, processes) : 0;
  const markdown = [
    `For each row, ${processes === 1 ? 'one child process starts' : `${processes} child processes each start`} ${perProcess} requests with new keys. ` +
      'A tap on the child\'s pg client holds every request at the kill point (the COMMIT statement, before it is sent or after its answer); ' +
      'once all are there the parent sends SIGKILL. A client then retries every key with the same approach until it gets an answer ' +
      `(every ${RETRY_DELAY_MS} ms while the key is in flight), and the database counts charges per key. ` +
      `The Redis lock TTL is ${LOCK_TTL_SECONDS} s here so the retry outlives it within the bench; with a longer TTL the duplicate only comes later.`,
    '',
    resultTable,
    '',
    'The Redis middleware charges twice whenever the process dies between the two stores: the charge committed in Postgres, the result never reached Redis, ' +
      'the lock expired and the retry ran the transaction again. withIdempotency has no such point: the key, the charge and the stored result commit in one ' +
      'transaction, so a retry either replays the committed result or runs on a clean slate.',
    '',
    targets.map((t) => `- ${t.target}: ${t.measured} — ${verdict(t.met)}`).join('\n'),
  ].join('\n');
  return { markdown, charts: [], targets, data: results };
}
