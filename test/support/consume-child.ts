// Child process for the consumer's crash tests: consumes one message on
// DATABASE_URL and waits to be killed, either inside the handler after its
// write ("effect", before COMMIT) or after the consumer returned ("consumed",
// before the queue was told: the ack).
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { consumeOnce } from '../../src/messages.js';
import { insertCharge } from './fixtures.js';

const [url, messageId, point] = process.argv.slice(2) as [string, string, 'effect' | 'consumed'];
const db = drizzle({ client: new pg.Pool({ connectionString: url, max: 2 }) });
const hang = () => new Promise<never>(() => {});
await consumeOnce(
  db,
  messageId,
  async (tx) => {
    const charge = await insertCharge(tx, messageId, 42);
    if (point === 'effect') {
      process.stdout.write('effect\n');
      await hang();
    }
    return charge;
  },
  { scope: 'payments-queue' },
);
process.stdout.write('consumed\n');
await hang();
