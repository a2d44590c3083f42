import PgBoss from 'pg-boss';
import pg from 'pg';
import { createMailQueues } from './notifications.js';

/**
 * pg-boss 10 does not await its own complete() and fail() after a handler
 * returns: when the connection drops at that moment, their rejection is
 * nobody's, and Node ends the process. The job is only left active: it expires
 * and is redelivered, and its key replays. So a lost connection there is
 * logged; any other unhandled rejection still ends the process. For the shop's
 * own process only: a test runner has its own handler.
 */
export function surviveLostConnectionsInPgBoss(): void {
  process.on('unhandledRejection', (reason) => {
    if (reason instanceof Error && LOST_CONNECTION.test(reason.message)) {
      console.error(`pg-boss (unawaited): ${reason.message}`);
      return;
    }
    throw reason;
  });
}
const LOST_CONNECTION = /Connection terminated|ECONNRESET|ECONNREFUSED|terminating connection|the database system is (shutting down|starting up)/;

/**
 * pg-boss on the shop's database (its tables in the schema `pgboss`), with the
 * mail queues created. Maintenance every second: it puts jobs whose worker died
 * back in the queue once they expire.
 */
export async function startShopBoss(
  databaseUrl: string,
  onError: (error: Error) => void = (error) => console.error('pg-boss:', error.message),
  options: { supervise?: boolean } = {},
): Promise<PgBoss> {
  const boss = new PgBoss({ connectionString: databaseUrl, max: 4, schedule: false, maintenanceIntervalSeconds: 1, supervise: options.supervise ?? true });
  boss.on('error', onError);
  // Shop processes started together would create pg-boss's schema and the
  // queues' tables at once, and deadlock each other: one at a time.
  const lock = new pg.Client({ connectionString: databaseUrl });
  await lock.connect();
  try {
    await lock.query(`select pg_advisory_lock(hashtext('drizzle-idempotency shop: pg-boss start'))`);
    await boss.start();
    await createMailQueues(boss);
  } finally {
    await lock.end();
  }
  return boss;
}
