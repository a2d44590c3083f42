// Child process for completer tests: runs a workflow on a key and is killed
// where CRASH_AFTER says (see completable-workflows.ts), leaving a started key
// whose lease runs out soon after: abandoned work. `unknown` runs a workflow
// the module given to `complete` does not export; `once` one that has a single attempt;
// `declined` one with a single attempt that fails definitely once resumed;
// `slow` the workflow of slow-workflows.ts, killed while it waits for its gate;
// for it, `key` may be several keys separated by commas, run at once.
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { defineWorkflow, runWorkflow } from '../../src/index.js';
import { payDeclined, payOnce, payOrder, type PaymentInput } from './completable-workflows.js';
import { slowPay } from './slow-workflows.js';

const [url, key, which] = process.argv.slice(2) as [string, string, 'pay' | 'once' | 'declined' | 'unknown' | 'slow'];
const pool = new pg.Pool({ connectionString: url, max: which === 'slow' ? 4 : 2 });
const db = drizzle({ client: pool });
const unknown = defineWorkflow(
  'cli.not-exported',
  async (_ctx, input: PaymentInput) => {
    process.stdout.write('claimed\n');
    await new Promise(() => {}); // killed here, its claim committed
    return { status: 201, body: input };
  },
  { lease: '1s' },
);
const input = { ref: key, amount: 4200 };
if (which === 'unknown') await runWorkflow(db, key, unknown, input, { scope: 'cli' });
else if (which === 'slow') await Promise.all(key.split(',').map((k) => runWorkflow(db, k, slowPay, { ref: k, amount: input.amount }, { scope: 'cli' })));
else await runWorkflow(db, key, { pay: payOrder, once: payOnce, declined: payDeclined }[which], input, { scope: 'cli' });
