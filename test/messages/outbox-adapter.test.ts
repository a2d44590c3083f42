import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import type PgBoss from 'pg-boss';
import postgres from 'postgres';
import { executeSqlOn, sendInTransaction } from '../../src/pg-boss.js';
import { startBoss } from '../support/boss.js';
import { testDatabase } from '../support/db.js';
import { count } from '../support/fixtures.js';
import { launch } from '../support/processes.js';

const t = await testDatabase();
let boss: PgBoss;
beforeAll(async () => {
  boss = await startBoss(t.url);
  await boss.createQueue('later', { name: 'later' });
});
afterAll(async () => {
  await boss?.stop({ graceful: false, wait: true });
});

describe('sendInTransaction takes every option boss.send() takes', () => {
  it('delays a job by seconds or by an interval (startAfter: 5, startAfter: "5 minutes") as boss.send() does', async () => {
    const ids = await t.db.transaction(async (tx) => [
      await sendInTransaction(boss, tx, 'later', { n: 1 }, { startAfter: 5 }),
      await sendInTransaction(boss, tx, 'later', { n: 2 }, { startAfter: '5 minutes' }),
      await sendInTransaction(boss, tx, 'later', { n: 3 }, { startAfter: new Date(Date.now() + 60_000) }),
    ]);
    expect(ids).toEqual([expect.any(String), expect.any(String), expect.any(String)]);
    const { rows } = await t.pool.query<{ delay: number }>(
      `select extract(epoch from start_after - created_on)::int as delay from pgboss.job where id = any($1::uuid[]) order by data->>'n'`,
      [ids],
    );
    expect(rows.map((r) => r.delay)).toEqual([5, 300, expect.any(Number)]);
  });

  it('keeps one parameter, hence one type, for a placeholder pg-boss uses more than once', async () => {
    // $1 is text where it first appears; a second, separate parameter would be typed timestamptz and refuse '5'.
    const { rows } = await executeSqlOn(t.db).executeSql(
      `select case when right($1, 1) = 'Z' then 'at' else 'after' end as kind, case when right($1, 1) = 'Z' then cast($1 as timestamptz) end as at`,
      ['5'],
    );
    expect(rows).toEqual([{ kind: 'after', at: null }]);
  });
});

describe('executeSqlOn copies what is not a placeholder as it is', () => {
  const run = (text: string, values: unknown[] = []) => executeSqlOn(t.db).executeSql(text, values);

  it('leaves $n inside dollar-quoted bodies whose tag has digits or non-ASCII letters', async () => {
    expect((await run(`select $q1$ $1 $q1$ as a, $é$ $2 $é$ as b, $3::int as n`, [0, 0, 7])).rows).toEqual([{ a: ' $1 ', b: ' $2 ', n: 7 }]);
  });

  it('leaves $n inside nested block comments', async () => {
    expect((await run(`select /* outer /* inner */ still a comment $1 */ $1::int as n`, [7])).rows).toEqual([{ n: 7 }]);
  });

  it("leaves $n inside escape strings, past a backslash-escaped quote (E'\\'')", async () => {
    expect((await run(`select E'it\\'s $2' as s, $1::int as n`, [7, 8])).rows).toEqual([{ s: "it's $2", n: 7 }]);
  });

  it('leaves $n that is part of a name (a$1 is an identifier)', async () => {
    expect((await run(`select $1::int as a$1`, [7])).rows).toEqual([{ a$1: 7 }]);
  });

  it('renumbers placeholders that skip numbers, past nine of them', async () => {
    const values = Array.from({ length: 12 }, (_, i) => i + 1);
    expect((await run(`select $12::int - $10::int as d, $11::int as e`, values)).rows).toEqual([{ d: 2, e: 11 }]);
  });
});

describe('sendInTransaction refuses what is not a transaction', () => {
  it('refuses a database: the job would commit on its own, whatever the business transaction does', async () => {
    await expect(sendInTransaction(boss, t.db, 'later', { n: 'outside' })).rejects.toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
    expect(await count(t.pool, 'pgboss.job', `data->>'n' = 'outside'`)).toBe(0);
  });
});

describe('the outbox on postgres.js', () => {
  it('enqueues with sendInTransaction and completes through executeSqlOn, as on node-postgres (undefined, objects and arrays as parameters)', async () => {
    const client = postgres(t.url, { max: 2, onnotice: () => {} });
    try {
      const db = drizzlePostgresJs({ client });
      await boss.createQueue('postgres-js', { name: 'postgres-js' });
      const data = { n: 'postgres.js', list: [1, { a: 'b' }] };
      const id = await db.transaction((tx) => sendInTransaction(boss, tx, 'postgres-js', data, { priority: 1 }));
      expect(await db.transaction((tx) => sendInTransaction(boss, tx, 'postgres-js', { n: 'later' }, { startAfter: 60 }))).toEqual(expect.any(String));
      // Fetched and completed on postgres.js too: a uuid[] and a jsonb parameter.
      const fetched = await boss.fetch('postgres-js', { db: executeSqlOn(db), batchSize: 5 });
      expect(fetched.map((job) => [job.id, job.data])).toEqual([[id, data]]);
      await boss.complete('postgres-js', id!, { sent: true }, { db: executeSqlOn(db) });
      expect(await boss.getJobById('postgres-js', id!)).toMatchObject({ state: 'completed', output: { sent: true } });
      await expect(db.transaction((tx) => sendInTransaction(boss, tx, 'later', { n: 'rolled back' }).then(() => tx.rollback()))).rejects.toThrow();
      expect(await count(t.pool, 'pgboss.job', `data->>'n' = 'rolled back'`)).toBe(0);
    } finally {
      await client.end({ timeout: 5 });
    }
  });
});

describe('executeSqlOn on a node-postgres pool', () => {
  it("keeps the process alive when a connection idle in the pool dies (pg-boss's fetch and complete use it so)", async () => {
    const child = launch(process.execPath, ['--import', 'tsx', 'test/support/adapter-pool-child.ts', t.url], { env: process.env });
    await child.waitFor(/idle \d+/);
    const pid = Number(/idle (\d+)/.exec(child.output())![1]);
    await t.pool.query('select pg_terminate_backend($1)', [pid]);
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.output()).toMatch(/alive/);
  });
});
