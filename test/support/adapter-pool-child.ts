// Child process for the outbox adapter's killed-connection test: a worker
// whose only use of its node-postgres pool is pg-boss's statements through
// executeSqlOn(db), as `boss.fetch(queue, { db })` makes them. It listens for
// nothing itself. It prints "idle <backend pid>" once its connection sits idle
// in the pool, then "alive" a second later, and exits 0, unless the killed
// connection's 'error' took it down.
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { executeSqlOn } from '../../src/pg-boss.js';

const [url] = process.argv.slice(2) as [string];
const pool = new pg.Pool({ connectionString: url, max: 1 });
const adapter = executeSqlOn(drizzle({ client: pool }));
const { rows } = await adapter.executeSql('select pg_backend_pid() as pid');
process.stdout.write(`idle ${(rows[0] as { pid: number }).pid}\n`);
await new Promise((resolve) => setTimeout(resolve, 1_000));
await adapter.executeSql('select 1');
process.stdout.write('alive\n');
await pool.end();
