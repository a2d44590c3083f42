import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { describe, expect, it } from 'vitest';
import { idempotent } from '../../src/express.js';
import { IdempotencyOptionsInvalidError, lookupReplay, withIdempotencyOutcome } from '../../src/index.js';
import { queryRows, type IdempotencyDatabase } from '../../src/driver/database.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge, keyRows, sleep } from '../support/fixtures.js';
import { logStatements } from '../support/query-log.js';

const t = await testDatabase();
await createBusinessTables(t.pool);
const pipelinedPool = t.newPool(60, { pipeline: true });
const events = logStatements(pipelinedPool);
const db = drizzle({ client: pipelinedPool });

const backendPid = async (tx: IdempotencyDatabase) =>
  ((await tx.execute(sql`select pg_backend_pid() as pid`)) as { rows: { pid: number }[] }).rows[0]!.pid;

describe('on a node-postgres pool created with pipeline: true', () => {
  it('sends BEGIN together with the claim and the store together with COMMIT', async () => {
    events.length = 0;
    const outcome = await withIdempotencyOutcome(db, 'piped-order', (tx) => insertCharge(tx, 'piped-order', 100));
    expect(outcome.replayed).toBe(false);
    const at = (event: string) => events.indexOf(event);
    // The claim left before BEGIN's answer came back, the COMMIT before the store's.
    expect(at('send claim')).toBeGreaterThan(at('send BEGIN'));
    expect(at('send claim')).toBeLessThan(at('done BEGIN'));
    expect(at('send COMMIT')).toBeGreaterThan(at('send store'));
    expect(at('send COMMIT')).toBeLessThan(at('done store'));
    // On the wire: BEGIN and the claim in one write, the charge, the store and COMMIT in one.
    expect(events.filter((e) => e === 'write' || e.startsWith('send '))).toEqual([
      'send BEGIN', 'send claim', 'write', 'send INSERT charge', 'write', 'send store', 'send COMMIT', 'write',
    ]);
    expect(await count(t.pool, 'charges', 'ref = $1', ['piped-order'])).toBe(1);
    expect(await count(t.pool, 'idempotency_keys', `key = 'piped-order' and status = 'completed'`)).toBe(1);
  });

  it('replays a completed key, the stored result byte for byte', async () => {
    const first = await withIdempotencyOutcome(db, 'piped-replay', (tx) => insertCharge(tx, 'piped-replay', 7));
    const again = await withIdempotencyOutcome(db, 'piped-replay', () => Promise.reject(new Error('ran twice')));
    expect(again).toEqual({ value: first.value, replayed: true });
    expect(await count(t.pool, 'charges', 'ref = $1', ['piped-replay'])).toBe(1);
  });

  describe.each(['read committed', 'repeatable read', 'serializable'] as const)('50 concurrent callers of one new key under %s', (isolationLevel) => {
    it('runs fn once and gives every caller the same result', async () => {
      const ref = `piped-storm-${isolationLevel}`;
      let calls = 0;
      const results = await Promise.all(
        Array.from({ length: 50 }, () =>
          withIdempotencyOutcome(
            db,
            ref,
            async (tx) => {
              calls++;
              const charge = await insertCharge(tx, ref, 500);
              await sleep(30);
              return charge;
            },
            { transaction: { isolationLevel }, serializationRetries: 5 },
          ),
        ),
      );
      expect(calls).toBe(1);
      expect(results.filter((r) => r.replayed)).toHaveLength(49);
      expect(new Set(results.map((r) => JSON.stringify(r.value))).size).toBe(1);
      expect(await count(t.pool, 'charges', 'ref = $1', [ref])).toBe(1);
      expect(await count(t.pool, 'idempotency_keys', `key = $1 and status = 'completed'`, [ref])).toBe(1);
    });
  });

  it('commits neither key nor effects when fn throws, and hands the connection back', async () => {
    await expect(
      withIdempotencyOutcome(db, 'piped-throw', async (tx) => {
        await insertCharge(tx, 'piped-throw', 100);
        throw new Error('card declined');
      }),
    ).rejects.toThrow('card declined');
    expect(await count(t.pool, 'charges', 'ref = $1', ['piped-throw'])).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'piped-throw'`)).toBe(0);
    expect(pipelinedPool.totalCount).toBe(pipelinedPool.idleCount);
    // Rolled back before it went back: no connection of this database sits in a transaction.
    expect(await count(t.pool, 'pg_stat_activity', `datname = current_database() and state like 'idle in transaction%'`)).toBe(0);
  });

  it("gives fn drizzle's own transaction: a nested savepoint rolls back alone, tx.rollback() undoes everything", async () => {
    const kept = await withIdempotencyOutcome(db, 'piped-nested', async (tx) => {
      const charge = await insertCharge(tx, 'piped-nested', 1);
      await tx.transaction(async (inner) => {
        await insertCharge(inner, 'piped-nested-inner', 1);
        inner.rollback();
      }).catch(() => {});
      return charge;
    });
    expect(kept.replayed).toBe(false);
    await expect(
      withIdempotencyOutcome(db, 'piped-rollback', async (tx) => {
        await insertCharge(tx, 'piped-rollback', 1);
        tx.rollback();
      }),
    ).rejects.toThrow(/rollback/i);
    expect(await count(t.pool, 'charges', 'ref = $1', ['piped-nested'])).toBe(1);
    expect(await count(t.pool, 'charges', 'ref = $1', ['piped-nested-inner'])).toBe(0);
    expect(await count(t.pool, 'charges', 'ref = $1', ['piped-rollback'])).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key in ('piped-nested', 'piped-rollback')`)).toBe(1);
  });

  it('rolls back the effects when the store finds no key row, although COMMIT was already sent', async () => {
    await expect(
      withIdempotencyOutcome(db, 'piped-vanish', async (tx) => {
        await insertCharge(tx, 'piped-vanish', 100);
        await tx.execute(sql`delete from idempotency_keys where key = 'piped-vanish'`);
        return 'done';
      }),
    ).rejects.toMatchObject({ code: 'IDEMPOTENCY_CLAIM_LOST' });
    expect(await count(t.pool, 'charges', 'ref = $1', ['piped-vanish'])).toBe(0);
  });

  it('commits nothing when the connection is killed while fn runs; the retry runs fn once', async () => {
    const killed = deferred<number>();
    const resume = deferred();
    const victim = withIdempotencyOutcome(db, 'piped-killed', async (tx) => {
      await insertCharge(tx, 'piped-killed', 100);
      killed.resolve(await backendPid(tx));
      await resume.promise;
      return insertCharge(tx, 'piped-killed-second-write', 100);
    });
    await t.pool.query('select pg_terminate_backend($1)', [await killed.promise]);
    resume.resolve();
    await expect(victim).rejects.toThrow();
    const retry = await withIdempotencyOutcome(db, 'piped-killed', (tx) => insertCharge(tx, 'piped-killed', 100));
    expect(retry.replayed).toBe(false);
    expect(await count(t.pool, 'charges', 'ref = $1', ['piped-killed'])).toBe(1);
    expect(await count(t.pool, 'charges', 'ref = $1', ['piped-killed-second-write'])).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'piped-killed' and status = 'completed'`)).toBe(1);
  });

  it('never hands on a connection whose COMMIT died with it: the next user gets a live one', async () => {
    // A deferred trigger that ends its own backend: the server dies at COMMIT.
    await t.pool.query(`
      create table doomed (id int);
      create function doom() returns trigger language plpgsql as $$
        begin perform pg_terminate_backend(pg_backend_pid()); return null; end $$;
      create constraint trigger doom_at_commit after insert on doomed
        deferrable initially deferred for each row execute function doom();`);
    const single = t.newPool(1, { pipeline: true });
    const running = deferred();
    const call = withIdempotencyOutcome(drizzle({ client: single }), 'piped-doomed', async (tx) => {
      await tx.execute(sql`insert into doomed values (1)`);
      running.resolve();
      return 'done';
    });
    await running.promise;
    const next = single.query<{ one: number }>('select 1 as one'); // waits for the only connection
    await expect(call).rejects.toThrow();
    expect((await next).rows).toEqual([{ one: 1 }]);
    expect(await count(t.pool, 'idempotency_keys', `key = 'piped-doomed'`)).toBe(0);
    expect(await count(t.pool, 'doomed')).toBe(0);
  });

  it('opens the transaction with the isolation level asked for', async () => {
    const { value } = await withIdempotencyOutcome(
      db,
      'piped-level',
      async (tx) => ((await tx.execute(sql`select current_setting('transaction_isolation') as level`)) as { rows: { level: string }[] }).rows[0]!.level,
      { transaction: { isolationLevel: 'serializable', accessMode: 'read write' } },
    );
    expect(value).toBe('serializable');
  });

});

describe('the transaction option, whose values become SQL text in BEGIN', () => {
  const bad = [
    { isolationLevel: 'serializable; drop table charges; begin' },
    { accessMode: 'read write; drop table charges' },
    { deferrable: 'yes' },
  ] as unknown as { isolationLevel: 'serializable' }[];

  it.each([
    ['a default pool', t.db],
    ['a pool in pipeline mode', db],
  ])('is refused with IDEMPOTENCY_OPTIONS_INVALID on %s before anything runs', async (_, target) => {
    const before = await keyRows(t.pool);
    for (const transaction of bad) {
      const error = await withIdempotencyOutcome(target, 'bad-transaction', () => Promise.resolve(1), { transaction }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdempotencyOptionsInvalidError);
      expect((error as IdempotencyOptionsInvalidError).code).toBe('IDEMPOTENCY_OPTIONS_INVALID');
    }
    expect(await keyRows(t.pool)).toEqual(before);
    expect((await t.pool.query(`select to_regclass('charges') is not null as present`)).rows[0]).toEqual({ present: true });
  });

  it('is refused when an idempotent() route is built', () => {
    expect(() => idempotent(db, () => Promise.resolve({ status: 200 }), { scope: 'tests', transaction: bad[0] })).toThrow(IdempotencyOptionsInvalidError);
  });
});

describe('prepare: true', () => {
  it('sends the library statements as named prepared statements, one per text and connection', async () => {
    const single = drizzle({ client: t.newPool(1) });
    const run = (key: string) => withIdempotencyOutcome(single, key, (tx) => insertCharge(tx, key, 1), { prepare: true });
    await run('prepared-1');
    await run('prepared-2');
    await run('prepared-1'); // claim conflicts: the read is prepared too
    expect(await lookupReplay(single, 'prepared-2', { prepare: true })).toMatchObject({ replayed: true });
    const names = await queryRows<{ name: string; statement: string }>(single, sql`select name, statement from pg_prepared_statements order by name`);
    const ours = names.filter((n) => n.name.startsWith('drizzle_idempotency_'));
    expect(ours.map((n) => n.statement.trim().split(/\s+/).slice(0, 2).join(' ')).sort()).toEqual([
      'insert into', // claim
      'select k.status,', // read
      'select status,', // lookup
      'with stored', // store, which fails in SQL: COMMIT follows it unanswered
    ]);
    expect(await count(t.pool, 'charges', `ref like 'prepared-%'`)).toBe(2);
  });

  const preparedCount = async (db: ReturnType<typeof drizzle>) =>
    (await queryRows<{ n: number }>(db, sql`select count(*)::int as n from pg_prepared_statements where name like 'drizzle_idempotency_%'`))[0]?.n;

  it('prepares nothing with prepare: false', async () => {
    const single = drizzle({ client: t.newPool(1) });
    await withIdempotencyOutcome(single, 'unprepared', (tx) => insertCharge(tx, 'unprepared', 1), { prepare: false });
    expect(await preparedCount(single)).toBe(0);
  });

  it("prepares the library's statements by default on a pool it uses itself, and none in the caller's transaction", async () => {
    const single = drizzle({ client: t.newPool(1) });
    await withIdempotencyOutcome(single, 'prepared-default', (tx) => insertCharge(tx, 'prepared-default', 1), { lookupFirst: true });
    expect(await preparedCount(single)).toBe(3); // lookup, claim, store
    const other = drizzle({ client: t.newPool(1) });
    await other.transaction((tx) => withIdempotencyOutcome(tx, 'prepared-caller', (tx) => insertCharge(tx, 'prepared-caller', 1)));
    expect(await preparedCount(other)).toBe(0);
  });

  it('goes back to unnamed statements, and runs the call again, when the server refuses a named one (as PgBouncer without prepared statements does)', async () => {
    const pool = t.newPool(1);
    const single = drizzle({ client: pool });
    await withIdempotencyOutcome(single, 'refused-1', (tx) => insertCharge(tx, 'refused-1', 1), { lookupFirst: true });
    // The server forgets the statements behind node-postgres' back, as a pooler
    // that hands the next transaction another server connection would.
    await pool.query('deallocate all');
    let calls = 0;
    const outcome = await withIdempotencyOutcome(single, 'refused-2', async (tx) => {
      calls++;
      return insertCharge(tx, 'refused-2', 1);
    });
    expect(outcome.replayed).toBe(false);
    expect(calls).toBe(1); // the refused statement was the claim: fn had not run yet
    expect(await count(t.pool, 'charges', `ref = 'refused-2'`)).toBe(1);
    // The lookup, refused too, looks again unnamed; and nothing is named from now on.
    expect(await withIdempotencyOutcome(single, 'refused-1', async () => 'again', { lookupFirst: true })).toMatchObject({ replayed: true });
    expect(await preparedCount(single)).toBe(0);
  });

  it('keeps the statements of two schemas apart on one connection', async () => {
    await t.pool.query('create schema if not exists tenant_b');
    const { migrate } = await import('../../src/index.js');
    await migrate(t.db, { schema: 'tenant_b' });
    const single = drizzle({ client: t.newPool(1, { pipeline: true }) });
    const a = await withIdempotencyOutcome(single, 'both-schemas', () => Promise.resolve('public'), { prepare: true });
    const b = await withIdempotencyOutcome(single, 'both-schemas', () => Promise.resolve('tenant_b'), { prepare: true, schema: 'tenant_b' });
    expect([a, b]).toEqual([{ value: 'public', replayed: false }, { value: 'tenant_b', replayed: false }]);
    expect((await keyRows(t.pool, 'tenant_b')).map((r) => r.key)).toEqual(['both-schemas']);
  });

  it('refuses a prepare that is not a boolean with IDEMPOTENCY_OPTIONS_INVALID', async () => {
    const call = withIdempotencyOutcome(db, 'prepare-bad', () => Promise.resolve(1), { prepare: 'yes' as unknown as boolean });
    await expect(call).rejects.toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
    expect(await count(t.pool, 'idempotency_keys', `key = 'prepare-bad'`)).toBe(0);
  });
});

describe("a store that node-postgres' query_timeout gives up on", () => {
  it.each([false, true])('is IDEMPOTENCY_COMMIT_FAILED (COMMIT was queued behind it; pipeline: %s), and the retry converges to one effect', async (pipeline) => {
    await t.pool.query(`
      create or replace function slow_store() returns trigger language plpgsql as $$
      begin if new.status = 'completed' and new.key like 'timed-out-%' then perform pg_sleep(0.5); end if; return new; end $$;
      drop trigger if exists slow_store on idempotency_keys;
      create trigger slow_store before update on idempotency_keys for each row execute function slow_store();`);
    const key = `timed-out-${pipeline}`;
    const impatient = drizzle({ client: t.newPool(2, { query_timeout: 200, pipeline }) });
    try {
      const error = await withIdempotencyOutcome(impatient, key, (tx) => insertCharge(tx, key, 1)).catch((e: unknown) => e);
      expect((error as { code?: string }).code).toBe('IDEMPOTENCY_COMMIT_FAILED');
      expect((error as { retryable?: boolean }).retryable).toBe(true);
    } finally {
      await t.pool.query(`drop trigger slow_store on idempotency_keys`);
    }
    await sleep(600); // whatever the server was still doing has ended
    await withIdempotencyOutcome(t.db, key, (tx) => insertCharge(tx, key, 1));
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
  });
});

describe('queries fn leaves running when its transaction ends', () => {
  it('never reach the next user of the connection: the connection is not given back', async () => {
    const pool = t.newPool(1);
    const db = drizzle({ client: pool });
    for (let i = 0; i < 10; i++) {
      await withIdempotencyOutcome(db, `forgotten-${i}`, async (tx) => {
        await insertCharge(tx, `forgotten-${i}`, 1);
        // A forgotten await: a read, then writes sent when it answers, while COMMIT is on its way.
        void queryRows<{ g: number }>(tx, sql`select g from generate_series(1, 3) g`)
          .then((found) => Promise.all(found.map((r) => tx.execute(sql`select 'late-' || ${String(r.g)} as v`))))
          .catch(() => {});
        return 'ok';
      });
      const client = await pool.connect();
      client.on('error', () => {});
      const { rows } = await client.query(`select 'mine-${i}' as v`);
      expect(rows).toEqual([{ v: `mine-${i}` }]);
      await sleep(100);
      client.release();
    }
  });

  it('refuses what fn asks of its transaction after the transaction ended, instead of running it on a connection that is not ours', async () => {
    const pool = t.newPool(1);
    const db = drizzle({ client: pool });
    let kept: Parameters<Parameters<typeof db.transaction>[0]>[0] | undefined;
    await withIdempotencyOutcome(db, 'kept-tx', async (tx) => {
      kept = tx;
      return 'ok';
    });
    // drizzle wraps the driver's error: ours is its cause.
    await expect(kept!.execute(sql`select 1`)).rejects.toMatchObject({ cause: { message: expect.stringMatching(/this transaction is over/) } });
    expect((await pool.query(`select 'still fine' as v`)).rows).toEqual([{ v: 'still fine' }]);
  });
});
