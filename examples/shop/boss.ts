import PgBoss from 'pg-boss';
import { createMailQueues } from './notifications.js';

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
  await boss.start();
  await createMailQueues(boss);
  return boss;
}
