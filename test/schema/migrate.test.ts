import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate as drizzleMigrate } from 'drizzle-orm/node-postgres/migrator';
import { describe, expect, it } from 'vitest';
import {
  defineWorkflow,
  IdempotencyOptionsInvalidError,
  migrate,
  migrationsFolder,
  migrationsFolderForDrizzle1,
  runWorkflow,
  withIdempotency,
  withIdempotencyOutcome,
} from '../../src/index.js';
import { MIGRATION_LOCK, MIGRATIONS_TABLE } from '../../src/schema/migrate.js';
import { waitForLockWaiters } from '../support/activity.js';
import { testDatabase } from '../support/db.js';
import { drizzleMajor } from '../support/drizzle-version.js';

const run = promisify(execFile);
// Every bundled migration, in order.
const ALL = ['0000_init', '0001_leased_workflows'];
const t = await testDatabase({ migrated: false });

// The bundled migrations in the layout of the drizzle-orm this run is on, and in the other one.
const ownFolder = drizzleMajor === 1 ? migrationsFolderForDrizzle1 : migrationsFolder;
const otherFolder = drizzleMajor === 1 ? migrationsFolder : migrationsFolderForDrizzle1;

async function tables(): Promise<string[]> {
  const { rows } = await t.pool.query<{ name: string }>(
    `select table_schema || '.' || table_name as name from information_schema.tables
     where table_schema not in ('pg_catalog', 'information_schema') order by 1`,
  );
  return rows.map((r) => r.name);
}

describe('migrate()', () => {
  it('creates the table once; a second call applies nothing', async () => {
    expect(await migrate(t.db)).toEqual({ applied: ALL });
    expect(await migrate(t.db)).toEqual({ applied: [] });
    expect(await tables()).toEqual(['public.drizzle_idempotency_migrations', 'public.idempotency_keys']);
    expect(await withIdempotency(t.db, 'after-migrate', async () => 'works')).toBe('works');
  });

  it('ends with one schema and no error when two processes migrate at the same moment', async () => {
    const runs = await Promise.all(
      [1, 2, 3].map(() => run(process.execPath, ['--import', 'tsx', 'test/support/migrate-child.ts', t.url, 'concurrent'])),
    );
    const applied = runs.map((r) => (JSON.parse(r.stdout) as { applied: string[] }).applied);
    expect(applied.flat()).toEqual(ALL);
    expect((await tables()).filter((name) => name.startsWith('concurrent.'))).toEqual([
      'concurrent.drizzle_idempotency_migrations',
      'concurrent.idempotency_keys',
    ]);
  });

  it('puts the table into a named schema that withIdempotency then uses', async () => {
    await migrate(t.db, { schema: 'billing' });
    expect(await withIdempotency(t.db, 'k', async () => 'billing', { schema: 'billing' })).toBe('billing');
    const { rows } = await t.pool.query(`select key from billing.idempotency_keys`);
    expect(rows).toEqual([{ key: 'k' }]);
    const { rows: search } = await t.pool.query<{ search_path: string }>('show search_path');
    expect(search[0]!.search_path).toBe('"$user", public');
  });

  it('rejects a schema name that is not a plain identifier, creating nothing', async () => {
    const before = await tables();
    await expect(migrate(t.db, { schema: 'x"; drop table y; --' })).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(await tables()).toEqual(before);
  });

  it(`works with drizzle's own migrator (drizzle-orm ${drizzleMajor === 1 ? '1.0' : '0.44+'}) through the exported folder of its layout, and refuses to mix both paths`, async () => {
    const other = await testDatabase({ migrated: false });
    const db = drizzle({ client: other.pool });
    await drizzleMigrate(db, { migrationsFolder: ownFolder, migrationsSchema: 'public', migrationsTable: '__idempotency_migrations' });
    expect(await withIdempotency(db, 'k', async () => 1)).toBe(1);
    // Mixing both paths is refused with a clear error, and changes nothing.
    await expect(migrate(db)).rejects.toMatchObject({ code: 'IDEMPOTENCY_MIGRATION_CONFLICT' });
    const { rows } = await other.pool.query(`select count(*)::int as n from information_schema.tables where table_name = 'drizzle_idempotency_migrations'`);
    expect(rows).toEqual([{ n: 0 }]);
  });

  it(`refuses, through drizzle's migrator (drizzle-orm ${drizzleMajor === 1 ? '1.0' : '0.44+'}), the folder of the other layout, creating nothing`, async () => {
    const other = await testDatabase({ migrated: false });
    const db = drizzle({ client: other.pool });
    await expect(drizzleMigrate(db, { migrationsFolder: otherFolder, migrationsSchema: 'public', migrationsTable: '__idempotency_migrations' })).rejects.toThrow();
    const { rows } = await other.pool.query(`select count(*)::int as n from information_schema.tables where table_name = 'idempotency_keys'`);
    expect(rows).toEqual([{ n: 0 }]);
  });

  it('upgrades a database made by the first migration, with keys in it: old keys replay or expire as before, and leased work runs', async () => {
    const d = await testDatabase({ migrated: false, max: 4 });
    // The state migrate() left before 0001: its bookkeeping says 0000_init, and the table has keys.
    await d.pool.query(`create table ${MIGRATIONS_TABLE} (tag text primary key, hash text not null, applied_at timestamptz not null default now())`);
    await d.pool.query(`insert into ${MIGRATIONS_TABLE} (tag, hash) values ('0000_init', 'as applied')`);
    for (const statement of (await readFile(join(migrationsFolder, '0000_init.sql'), 'utf8')).split('--> statement-breakpoint')) await d.pool.query(statement);
    await d.pool.query(`insert into idempotency_keys (scope, key, fingerprint, status, response, completed_at, expires_at) values
      ('alice', 'paid', 'fp', 'completed', '{"value": {"id": 1}}', now(), now() + interval '1 day'),
      ('alice', 'old', null, 'completed', '{"value": {"id": 2}}', now() - interval '2 days', now() - interval '1 day')`);

    expect(await migrate(d.db)).toEqual({ applied: ['0001_leased_workflows'] });

    const { rows } = await d.pool.query(`select key, status, attempts, owner_token, workflow from idempotency_keys order by key`);
    expect(rows).toEqual([
      { key: 'old', status: 'completed', attempts: 0, owner_token: null, workflow: null },
      { key: 'paid', status: 'completed', attempts: 0, owner_token: null, workflow: null },
    ]);
    const run = async () => ({ id: 3 });
    expect(await withIdempotencyOutcome(d.db, 'paid', run, { scope: 'alice', fingerprint: 'fp' })).toEqual({ value: { id: 1 }, replayed: true });
    expect(await withIdempotencyOutcome(d.db, 'old', run, { scope: 'alice' })).toEqual({ value: { id: 3 }, replayed: false });
    expect(await d.db.transaction((tx) => withIdempotencyOutcome(tx, 'new', run, { scope: 'alice' }))).toEqual({ value: { id: 3 }, replayed: false });
    const leased = defineWorkflow('test.after-upgrade', async (ctx) => ctx.step('one', async () => 'leased'));
    expect(await runWorkflow(d.db, 'leased', leased, null, { scope: 'alice' })).toBe('leased');
    const { rows: after } = await d.pool.query(`select key, status from idempotency_keys order by key`);
    expect(after).toEqual(['leased', 'new', 'old', 'paid'].map((key) => ({ key, status: 'completed' })));
  });

  it("creates the same table from either folder's SQL as migrate() does", async () => {
    const describeTable = async (pool: typeof t.pool) =>
      (
        await pool.query<{ what: string }>(
          `select format('column %s %s %s default %s', attname, format_type(atttypid, atttypmod), case when attnotnull then 'not null' else 'null' end, coalesce(pg_get_expr(d.adbin, d.adrelid), '-')) as what
             from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
            where attrelid = 'idempotency_keys'::regclass and attnum > 0 and not attisdropped
           union all
           select format('constraint %s %s', conname, pg_get_constraintdef(oid)) from pg_constraint where conrelid = 'idempotency_keys'::regclass
           union all
           select format('index %s', pg_get_indexdef(indexrelid)) from pg_index where indrelid = 'idempotency_keys'::regclass
           order by 1`,
        )
      ).rows.map((r) => r.what);
    // Each migration's SQL as written, statement by statement, without any migrator.
    const applySql = async (pool: typeof t.pool, files: string[]) => {
      for (const file of files) {
        for (const statement of (await readFile(file, 'utf8')).split('--> statement-breakpoint')) await pool.query(statement);
      }
    };
    const byMigrate = await testDatabase({ migrated: false });
    await migrate(byMigrate.db);
    const expected = await describeTable(byMigrate.pool);
    expect(expected).toContain("constraint idempotency_keys_pkey PRIMARY KEY (scope, key)");

    const fromKit031 = await testDatabase({ migrated: false });
    const journal = JSON.parse(await readFile(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as { entries: { tag: string }[] };
    await applySql(fromKit031.pool, journal.entries.map((e) => join(migrationsFolder, `${e.tag}.sql`)));
    expect(await describeTable(fromKit031.pool)).toEqual(expected);

    const fromKit1 = await testDatabase({ migrated: false });
    const folders = (await readdir(migrationsFolderForDrizzle1)).sort();
    expect(folders.length).toBe(journal.entries.length);
    await applySql(fromKit1.pool, folders.map((f) => join(migrationsFolderForDrizzle1, f, 'migration.sql')));
    expect(await describeTable(fromKit1.pool)).toEqual(expected);
  });

  describe.each(['read committed', 'repeatable read', 'serializable'])('on a database whose default isolation is %s', (level) => {
    it.each([
      { where: 'the search_path', schema: undefined },
      { where: 'a named schema', schema: 'billing' },
    ])(
      'lets several processes migrate into $where at once: all succeed, the table exists once, each migration is recorded once',
      async ({ schema }) => {
        const d = await testDatabase({ migrated: false, max: 2 });
        await d.pool.query(`alter database ${d.name} set default_transaction_isolation = '${level}'`);
        // Hold migrate()'s lock while the processes start, so that every one of
        // them begins its transaction and queues behind the lock: the moment
        // their snapshots are taken is the point of the test, not left to chance.
        const holder = await d.pool.connect();
        const processes = 4;
        const args = ['--import', 'tsx', 'test/support/migrate-child.ts', d.url, ...(schema ? [schema] : [])];
        let children: Promise<{ stdout: string }>[] = [];
        try {
          await holder.query('begin');
          await holder.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
          children = Array.from({ length: processes }, () => run(process.execPath, args));
          await waitForLockWaiters(d.pool, processes, 20_000);
        } finally {
          await holder.query('commit');
          holder.release();
        }
        const runs = await Promise.allSettled(children);
        expect(runs.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok'))).toEqual(Array(processes).fill('ok'));
        const applied = runs.map((r) => (JSON.parse((r as PromiseFulfilledResult<{ stdout: string }>).value.stdout) as { applied: string[] }).applied);
        expect(applied.flat()).toEqual(ALL);

        const where = schema ?? 'public';
        const { rows: created } = await d.pool.query<{ name: string }>(
          `select table_name as name from information_schema.tables where table_schema = $1 order by 1`,
          [where],
        );
        expect(created.map((r) => r.name)).toEqual([MIGRATIONS_TABLE, 'idempotency_keys']);
        const { rows: recorded } = await d.pool.query(`select tag, count(*)::int as n from ${where}.${MIGRATIONS_TABLE} group by tag order by tag`);
        expect(recorded).toEqual(ALL.map((tag) => ({ tag, n: 1 })));
      },
    );
  });

  it.each(['repeatable read', 'serializable'] as const)(
    'given a %s transaction that took its snapshot before another migrate() committed, fails with a retryable error; run again, it applies nothing',
    async (isolationLevel) => {
      const d = await testDatabase({ migrated: false, max: 2 });
      // Inside the caller's transaction, migrate() cannot choose the isolation
      // level, and a snapshot taken before the lock cannot be refreshed.
      const inCallersTransaction = () =>
        d.db.transaction(
          async (tx) => {
            await tx.execute(sql`select 1`);
            await migrate(drizzle({ client: d.newPool(1) }));
            return migrate(tx);
          },
          { isolationLevel },
        );
      await expect(inCallersTransaction()).rejects.toMatchObject({ code: 'IDEMPOTENCY_SERIALIZATION_FAILURE', retryable: true });
      expect(await d.db.transaction((tx) => migrate(tx), { isolationLevel })).toEqual({ applied: [] });
      const { rows } = await d.pool.query(`select tag from ${MIGRATIONS_TABLE} order by tag`);
      expect(rows).toEqual(ALL.map((tag) => ({ tag })));
    },
  );

  it("given the caller's transaction and a schema, leaves that transaction's search_path as it was", async () => {
    const d = await testDatabase({ migrated: false, max: 2 });
    const searchPath = await d.db.transaction(async (tx) => {
      await migrate(tx, { schema: 'billing' });
      return (await tx.execute<{ search_path: string }>(sql`show search_path`)).rows[0]!.search_path;
    });
    expect(searchPath).toBe('"$user", public');
  });
});

