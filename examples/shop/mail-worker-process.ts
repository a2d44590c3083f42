// A mail worker in a process of its own, for the demo to kill with SIGKILL in
// the middle of a batch: one worker, on the welcome queue only (so that
// nothing else is in flight when it dies), taking batches of three jobs; after
// sending its second e-mail (before that job's COMMIT) it prints "mid-batch"
// and hangs. Its jobs stay active until they expire; then pg-boss redelivers them
// to the demo's other workers. It exits when its parent goes (stdin closes).
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { startShopBoss } from './boss.js';
import { startMailWorkers } from './mail-worker.js';
import { WELCOME_QUEUE } from './notifications.js';

const [databaseUrl, mailApiUrl] = process.argv.slice(2) as [string, string];
process.stdin.on('end', () => process.exit(0)).resume();
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
pool.on('error', () => {});
const boss = await startShopBoss(databaseUrl, () => {}, { supervise: false });
let sent = 0;
await startMailWorkers(drizzle({ client: pool }), boss, mailApiUrl, {
  queues: [WELCOME_QUEUE],
  workers: 1,
  batchSize: 3,
  afterSend: async () => {
    if (++sent === 2) {
      process.stdout.write('mid-batch\n');
      await new Promise(() => {});
    }
  },
});
process.stdout.write('working\n');
