// Child process: runs migrate() once against the database URL in argv.
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { migrate } from '../../src/index.js';

const [url, schema] = process.argv.slice(2) as [string, string | undefined];
const pool = new pg.Pool({ connectionString: url, max: 1 });
try {
  const result = await migrate(drizzle({ client: pool }), schema ? { schema } : {});
  process.stdout.write(JSON.stringify(result));
} finally {
  await pool.end();
}
