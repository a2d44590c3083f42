// A process set up as a user would (no error listener of its own on the pool
// or its clients) that meets a connection the server terminates; it prints
// "still serving" if it lives through it. Modes:
// - caller-transaction: the library's claim, in the caller's transaction, on a
//   connection a trigger terminates;
// - sweeper: a process that only runs startSweeper, whose idle connection is
//   terminated between two sweeps.
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { startSweeper, withIdempotency } from '../../src/index.js';

const [url, mode, applicationName] = process.argv.slice(2) as [string, string, string];
const pool = new pg.Pool({ connectionString: url, application_name: applicationName });
const db = drizzle({ client: pool });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

if (mode === 'caller-transaction') {
  const outcome = await db.transaction((tx) => withIdempotency(tx, 'terminated', async () => 'done')).then(
    () => 'the call succeeded',
    (error: unknown) => `the call failed: ${(error as Error).message.split('\n')[0]}`,
  );
  process.stdout.write(`${outcome}\n`);
} else {
  let sweeps = 0;
  const sweeper = startSweeper(db, { every: '100ms', immediate: true, onSweep: () => void sweeps++, onError: () => {} });
  while (sweeps < 1) await sleep(20);
  process.stdout.write('swept\n');
  // The parent terminates our idle connection now.
  const before = sweeps;
  while (sweeps < before + 3) await sleep(20);
  await sweeper.stop();
}
await sleep(200); // the 'end' of a terminated connection arrives after its error
process.stdout.write('still serving\n');
await pool.end();
