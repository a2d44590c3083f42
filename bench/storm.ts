// `npm run bench:storm [-- --quick]`: what a storm of one key costs everybody
// else. A pool of 10; 8 workers run first executions of new keys back to back;
// in alternate windows, a first execution of one key holds its transaction for
// the whole window while 200 duplicates of that key arrive. Reported: the
// workers' p99 latency in storm windows over quiet ones, median over rounds,
// for duplicates given the database (they wait in process, holding no
// connection) and, for contrast, duplicates in transactions of their own
// (each holds a connection while it waits in the database, as any caller
// that owns its transaction does).
import { randomUUID } from 'node:crypto';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { withIdempotency } from '../src/index.js';
import { charge, randomSku } from './business.js';
import { openEnvironment } from './environment.js';
import { runClosedLoop, sleep } from './load.js';
import { randomTenant } from './scenarios.js';
import { median, spread } from './stats.js';

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 2 : 5;
const WINDOW_SECONDS = quick ? 2 : 4;
const POOL = 10;
const WORKERS = 8;
const DUPLICATES = 200;

type DuplicateMode = 'given the database' | 'in their own transactions';

const firstExecution = (db: NodePgDatabase) => async () => {
  const key = randomUUID();
  await withIdempotency(db, key, (tx) => charge(tx, key, randomSku()), { scope: randomTenant() });
};

/** Holds one key for `ms` while `DUPLICATES` duplicates of it arrive; resolves when all have settled. */
async function storm(db: NodePgDatabase, mode: DuplicateMode, ms: number): Promise<void> {
  const key = randomUUID();
  const fn = async (tx: Parameters<Parameters<NodePgDatabase['transaction']>[0]>[0]) => {
    const result = await charge(tx, key, randomSku());
    await sleep(ms);
    return result;
  };
  const options = { scope: 'storm', waitTimeout: '60s' as const };
  const first = withIdempotency(db, key, fn, options);
  await sleep(50);
  const duplicates = Array.from({ length: DUPLICATES }, () =>
    mode === 'given the database'
      ? withIdempotency(db, key, fn, options)
      : db.transaction((tx) => withIdempotency(tx, key, fn, options)),
  );
  await Promise.allSettled([first, ...duplicates]);
}

async function measure(db: NodePgDatabase, mode: DuplicateMode): Promise<{ quiet: number; storm: number }> {
  const quiet = await runClosedLoop({ operation: firstExecution(db), workers: WORKERS, seconds: WINDOW_SECONDS, warmupSeconds: 0.5 });
  const stormDone = storm(db, mode, (WINDOW_SECONDS + 1) * 1000);
  const stormy = await runClosedLoop({ operation: firstExecution(db), workers: WORKERS, seconds: WINDOW_SECONDS, warmupSeconds: 0.5 });
  await stormDone;
  return { quiet: quiet.p99Ms, storm: stormy.p99Ms };
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const environment = await openEnvironment(log);
try {
  const pool = new pg.Pool({ connectionString: environment.url, max: POOL });
  const db = drizzle({ client: pool });
  const lines = ['| duplicates of the storm key | quiet p99 (ms) | storm p99 (ms) | storm ÷ quiet, median (min–max) |', '|---|---|---|---|'];
  for (const mode of ['given the database', 'in their own transactions'] as const) {
    const rounds: { quiet: number; storm: number }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      rounds.push(await measure(db, mode));
      log(`${mode}: round ${round + 1}/${ROUNDS}: quiet p99 ${rounds.at(-1)!.quiet.toFixed(1)} ms, storm p99 ${rounds.at(-1)!.storm.toFixed(1)} ms`);
    }
    // NaN: not one operation of the workers completed in the storm window (the pool was starved).
    const starved = rounds.some((r) => Number.isNaN(r.storm));
    const ratio = spread(rounds.map((r) => r.storm / r.quiet));
    lines.push(
      `| ${mode} | ${median(rounds.map((r) => r.quiet)).toFixed(1)} | ` +
        (starved
          ? `none completed in ${rounds.filter((r) => Number.isNaN(r.storm)).length} of ${ROUNDS} windows | starved |`
          : `${median(rounds.map((r) => r.storm)).toFixed(1)} | ${ratio.median.toFixed(2)}x (${ratio.min.toFixed(2)}–${ratio.max.toFixed(2)}) |`),
    );
  }
  await pool.end();
  process.stdout.write(
    `Other keys' p99 during a storm of ${DUPLICATES} duplicates of one key, pool of ${POOL}, ${WORKERS} workers, ` +
      `${ROUNDS} rounds of ${WINDOW_SECONDS} s windows:\n\n${lines.join('\n')}\n`,
  );
} finally {
  await environment.close({ keepDatabase: false });
}
