import { fileURLToPath } from 'node:url';
import { migrate as migrateShop } from 'drizzle-orm/node-postgres/migrator';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-idempotency';

/** The library's table through its own migrate(), the shop's tables through
 * drizzle's migrator: two sets of migrations, two bookkeeping tables. */
export async function migrateAll(db: NodePgDatabase): Promise<void> {
  await migrate(db);
  await migrateShop(db, {
    migrationsFolder: fileURLToPath(new URL('./migrations', import.meta.url)),
    migrationsTable: '__shop_migrations',
  });
}
