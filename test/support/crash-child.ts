// Child process for crash tests: runs withIdempotency on DATABASE_URL, prints
// "stored" after the result is stored but before COMMIT, then waits to be killed.
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { withIdempotency } from '../../src/index.js';
import { insertCharge } from './fixtures.js';

const [url, key] = process.argv.slice(2) as [string, string];
const pool = new pg.Pool({ connectionString: url, max: 1 });
const db = drizzle({ client: pool });
await db.transaction(async (tx) => {
  await withIdempotency(tx, key, (inner) => insertCharge(inner, key, 42));
  process.stdout.write('stored\n');
  await new Promise(() => {}); // killed here, between the stored result and COMMIT
});
