import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { queryRows, type IdempotencyDatabase } from '../driver/database.js';
import { listenForIdleErrors } from '../driver/pool-transaction.js';
import { refuseDriverWithoutTransactions } from '../driver/interactive-transactions.js';
import { transactionThatCommits } from '../driver/postgres-js-commit.js';
import { assertValidSchemaName } from './keys-table.js';
import { IdempotencyMigrationConflictError, IdempotencySerializationError } from '../shared/errors.js';
import { DUPLICATE_TABLE, SERIALIZATION_FAILURE, sqlState } from '../driver/pg-error.js';

/**
 * Absolute path of the bundled drizzle-kit migrations, for teams that apply
 * them with their own tooling instead of `migrate()`.
 *
 * @example
 * await drizzleMigrate(db, { migrationsFolder, migrationsTable: '__idempotency_migrations' });
 */
export const migrationsFolder = fileURLToPath(new URL('../../migrations', import.meta.url));

/**
 * The same migrations in drizzle-kit 1.0's layout (a folder per migration),
 * for drizzle-orm 1.0's migrator, which refuses `migrationsFolder` (the
 * layout of drizzle-kit 0.31 that drizzle-orm 0.44 and 0.45 read).
 *
 * @example
 * await drizzleMigrate(db, { migrationsFolder: migrationsFolderForDrizzle1, migrationsTable: '__idempotency_migrations' });
 */
export const migrationsFolderForDrizzle1 = join(migrationsFolder, 'drizzle-1');

/** Options of `migrate`. */
export interface MigrateOptions {
  /** Postgres schema to create the table in; created if missing. (Default: the first schema of the search_path) */
  schema?: string;
}

/** Which migrations a `migrate` call applied (empty when the schema was current). */
export interface MigrateResult {
  applied: string[];
}

/** Our own bookkeeping table: sharing drizzle's `__drizzle_migrations` with the
 * app would make drizzle skip one set (it compares only the newest timestamp). */
export const MIGRATIONS_TABLE = 'drizzle_idempotency_migrations';

// Transaction-scoped advisory lock: concurrent migrate() calls queue up instead
// of racing on CREATE TABLE, and nothing outlives the transaction (PgBouncer-safe).
// Exported for tests, which hold it to line concurrent migrations up behind it.
export const MIGRATION_LOCK = 0x69646d70; // 'idmp'

interface Migration {
  tag: string;
  hash: string;
  statements: string[];
}

async function readMigrations(): Promise<Migration[]> {
  const journal = JSON.parse(await readFile(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as {
    entries: { idx: number; tag: string }[];
  };
  const entries = [...journal.entries].sort((a, b) => a.idx - b.idx);
  return Promise.all(
    entries.map(async ({ tag }) => {
      const text = await readFile(join(migrationsFolder, `${tag}.sql`), 'utf8');
      return {
        tag,
        hash: createHash('sha256').update(text).digest('hex'),
        statements: text.split('--> statement-breakpoint').map((s) => s.trim()).filter(Boolean),
      };
    }),
  );
}

// The lock only helps if what a waiter reads after it sees what the holder
// committed. Under REPEATABLE READ or SERIALIZABLE (a database's default may be
// either) the snapshot is taken by the statement that then waits for the lock,
// so it predates the holder's commit: the bookkeeping would look empty and the
// CREATE TABLE would collide. READ COMMITTED takes a snapshot per statement, so
// every statement after the lock sees the winner's tables and rows. Nothing here
// needs more: the lock already serialises migrators, and DDL is not MVCC-safe
// at any level.
const MIGRATION_TRANSACTION = { isolationLevel: 'read committed' } as const;

/**
 * Records `m` as applied before its statements run, so that its row is the
 * check; false if it was applied meanwhile. Given a transaction, migrate() runs
 * at the caller's isolation level; under REPEATABLE READ or SERIALIZABLE a
 * snapshot older than another migrate()'s commit does not show that commit's
 * row, and the insert then meets it: Postgres answers ON CONFLICT against a row
 * the snapshot cannot see with 40001. Only a new transaction can see it, so
 * that is the caller's to retry.
 */
async function claim(tx: IdempotencyDatabase, m: Migration): Promise<boolean> {
  const claimed = await queryRows(
    tx,
    sql`insert into ${sql.identifier(MIGRATIONS_TABLE)} (tag, hash) values (${m.tag}, ${m.hash}) on conflict (tag) do nothing returning tag`,
  ).then(undefined, (error: unknown) => {
    if (sqlState(error) !== SERIALIZATION_FAILURE) throw error;
    throw new IdempotencySerializationError(
      `migration ${m.tag}: another migrate() committed it after this transaction took its snapshot; ` +
        'run the whole transaction again (or call migrate() with the database, not a transaction).',
      { cause: error },
    );
  });
  return claimed.length === 1;
}

/**
 * Applies the bundled migrations in one transaction. Safe to call at every
 * start, from many processes at once, whatever the database's default
 * isolation level.
 *
 * @example
 * await migrate(db);                        // public.idempotency_keys
 * await migrate(db, { schema: 'billing' }); // billing.idempotency_keys
 */
export async function migrate(db: IdempotencyDatabase, options: MigrateOptions = {}): Promise<MigrateResult> {
  const { schema } = options;
  if (schema !== undefined) assertValidSchemaName(schema);
  refuseDriverWithoutTransactions(db, 'migrate');
  listenForIdleErrors(db);
  const migrations = await readMigrations();
  return transactionThatCommits(db, MIGRATION_TRANSACTION, async (tx: IdempotencyDatabase) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    let searchPath: string | undefined;
    if (schema !== undefined) {
      await tx.execute(sql`create schema if not exists ${sql.identifier(schema)}`);
      // The generated SQL names tables unqualified; point it at the schema for
      // this transaction only. Given the caller's transaction, "this transaction"
      // is theirs, so the old value goes back when the migrations are done.
      const [current] = await queryRows<{ search_path: string }>(tx, sql`select current_setting('search_path') as search_path`);
      searchPath = current?.search_path;
      await tx.execute(sql`select set_config('search_path', quote_ident(${schema}), true)`);
    }
    await tx.execute(
      sql`create table if not exists ${sql.identifier(MIGRATIONS_TABLE)} (
            tag text primary key,
            hash text not null,
            applied_at timestamptz not null default now())`,
    );
    const done = new Set(
      (await queryRows<{ tag: string }>(tx, sql`select tag from ${sql.identifier(MIGRATIONS_TABLE)}`)).map((r) => r.tag),
    );
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.tag) || !(await claim(tx, m))) continue;
      for (const statement of m.statements) {
        await tx.execute(sql.raw(statement)).then(undefined, (error: unknown) => {
          if (sqlState(error) !== DUPLICATE_TABLE) throw error;
          throw new IdempotencyMigrationConflictError(
            `migration ${m.tag}: the table exists but migrate() did not create it; it is managed elsewhere ` +
              '(your own drizzle-kit migrations?). Use one path: migrate(), or the exported table in your schema.',
            { cause: error },
          );
        });
      }
      applied.push(m.tag);
    }
    if (searchPath !== undefined) await tx.execute(sql`select set_config('search_path', ${searchPath}, true)`);
    return { applied };
  });
}
