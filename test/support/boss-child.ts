// Child process for the outbox's crash test: a pg-boss worker that takes a
// batch of welcome e-mails and, on the batch's second job, sends the e-mail and
// then hangs before COMMIT, printing "sent <job id>", until it is killed.
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { idempotentJobHandler } from '../../src/pg-boss.js';
import { startBoss, WORK } from './boss.js';
import { welcomeHandler } from './welcome.js';

const [url, queue, mailUrl] = process.argv.slice(2) as [string, string, string];
const db = drizzle({ client: new pg.Pool({ connectionString: url, max: 2 }) });
const boss = await startBoss(url, { supervise: false });
let handled = 0;
await boss.work(
  queue,
  { ...WORK, batchSize: 3 },
  idempotentJobHandler(
    db,
    welcomeHandler(mailUrl, async (job) => {
      if (++handled === 2) {
        process.stdout.write(`sent ${job.id}\n`);
        await new Promise(() => {});
      }
    }),
  ),
);
process.stdout.write('working\n');
