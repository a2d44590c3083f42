// A payments server as a user would run it, for the fault tests: no error
// listener of its own on the pool or its clients (the test helpers add those;
// this server must survive without them). Prints its port, then serves.
import { drizzle } from 'drizzle-orm/node-postgres';
import express from 'express';
import pg from 'pg';
import { idempotent } from '../../src/express.js';
import { insertCharge } from './fixtures.js';

const [url, applicationName] = process.argv.slice(2) as [string, string];
const db = drizzle({ client: new pg.Pool({ connectionString: url, max: 8, application_name: applicationName }) });
const app = express();
app.use(express.json());
app.post(
  '/payments',
  idempotent(
    db,
    async (req, tx) => {
      const { ref, amount } = req.body as { ref: string; amount: number };
      const charge = await insertCharge(tx, ref, amount);
      return { status: 201, body: charge };
    },
    { scope: (req) => req.get('x-customer') ?? 'anonymous' },
  ),
);
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : ''}\n`);
});
