// Child process for the leased-work crash tests: runs the payment workflow
// for one key and, at the point named, kills itself with SIGKILL (a crash) or
// stops itself with SIGSTOP (a zombie: alive, paused, its lease running out),
// after printing "at <point>". When it gets to the end it prints
// "done <result>" or "error <code>".
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { runWorkflow } from '../../src/index.js';
import { payWorkflow, type ShopPoint } from './leased-shop.js';

const [url, key, point, how, lease] = process.argv.slice(2) as [string, string, ShopPoint, 'kill' | 'stop', string];
const pool = new pg.Pool({ connectionString: url, max: 3 });
pool.on('error', () => {});
const gateway = new pg.Pool({ connectionString: url, max: 1 });
const db = drizzle({ client: pool });
const workflow = payWorkflow(
  gateway,
  {
    at: async (at) => {
      if (at !== point) return;
      process.stdout.write(`at ${at}\n`);
      process.kill(process.pid, how === 'kill' ? 'SIGKILL' : 'SIGSTOP');
      // Continued after SIGSTOP: let the event loop see the time that passed.
      await new Promise((resolve) => setTimeout(resolve, 20));
    },
  },
  { lease: lease as `${number}ms` },
);
try {
  const result = await runWorkflow(db, key, workflow, { ref: key, amount: 500 }, { onInFlight: 'reject' });
  process.stdout.write(`done ${JSON.stringify(result)}\n`);
} catch (error) {
  process.stdout.write(`error ${(error as { code?: string }).code ?? String(error)}\n`);
}
await pool.end();
await gateway.end();
