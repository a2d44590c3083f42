// The core behaviour on every driver of test/support/drivers.ts: one suite,
// one loop. Effects are counted by the database itself after every test that
// races (one charge and one completed key per key).
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import {
  IdempotencyInFlightError,
  IdempotencyKeyInvalidError,
  IdempotencyKeyReusedError,
  IdempotencyOptionsInvalidError,
  lookupReplay,
  migrate,
  withIdempotency,
  withIdempotencyOutcome,
  type IdempotencyOptions,
} from '../../src/index.js';
import { testDatabase, type TestDatabase } from '../support/db.js';
import { chargeOn, closeDrivers, proxiedConnections, countOn, DRIVERS, rowsOn, type DriverUnderTest, type OpenDriver } from '../support/drivers.js';
import { deferred, sleep } from '../support/fixtures.js';
import { retryTransaction } from '../support/retry.js';

const LEVELS = ['read committed', 'repeatable read', 'serializable'] as const;
const CALLERS = 10;

afterAll(closeDrivers);

// A database of its own for each driver on the test server (made here: testDatabase drops it after the file).
const databases = new Map<DriverUnderTest, TestDatabase>();
for (const driver of DRIVERS) if (!driver.unavailable && !driver.oneConnection) databases.set(driver, await testDatabase());

describe.each(DRIVERS)('on $name', (driver: DriverUnderTest) => {
  if (driver.unavailable) {
    it.skip(`runs the core suite: skipped, ${driver.unavailable}`, () => {});
    return;
  }
  let open: OpenDriver;
  let db: IdempotencyDatabase;
  const o = (extra: IdempotencyOptions = {}): IdempotencyOptions => ({ ...driver.options, ...extra });
  /** A test that needs two transactions open at once: not applicable on one connection. */
  const twoConnections = (name: string, fn: () => Promise<void>) =>
    driver.oneConnection ? it.skip(`${name} (not applicable: ${driver.oneConnection})`, fn) : it(name, fn);
  const charges = (ref: string) => countOn(db, 'charges', sql`ref = ${ref}`);
  const completedKeys = (key: string) => countOn(db, 'idempotency_keys', sql`key = ${key} and status = 'completed'`);
  const keys = (key: string) => countOn(db, 'idempotency_keys', sql`key = ${key}`);

  beforeAll(async () => {
    const t = databases.get(driver);
    open = await driver.open(t?.url ?? '', t?.name ?? '');
    db = open.db;
    await db.execute(sql`create table if not exists charges (id serial primary key, ref text not null, amount integer not null)`);
  });
  afterAll(() => open?.close());

  it('runs fn once and replays its stored result, given the database or a transaction', async () => {
    let calls = 0;
    const fn = async (tx: IdempotencyDatabase) => {
      calls++;
      return chargeOn(tx, 'replay', 7);
    };
    const first = await withIdempotencyOutcome(db, 'replay', fn, o({ fingerprint: { amount: 7 } }));
    const second = await withIdempotencyOutcome(db, 'replay', fn, o({ fingerprint: { amount: 7 } }));
    const third = await db.transaction((tx) => withIdempotencyOutcome(tx, 'replay', fn, o({ fingerprint: { amount: 7 } })));
    expect(first).toEqual({ value: { id: expect.any(Number), amount: 7 }, replayed: false });
    expect(second).toEqual({ value: first.value, replayed: true });
    expect(third).toEqual(second);
    expect(await lookupReplay(db, 'replay', o({ fingerprint: { amount: 7 } }))).toEqual(second);
    expect(calls).toBe(1);
    expect(await charges('replay')).toBe(1);
  });

  it('refuses the key for a different request with IDEMPOTENCY_KEY_REUSED, running nothing', async () => {
    await withIdempotency(db, 'reused', (tx) => chargeOn(tx, 'reused', 1), o({ fingerprint: { amount: 1 } }));
    const error = await withIdempotency(db, 'reused', (tx) => chargeOn(tx, 'reused', 2), o({ fingerprint: { amount: 2 } })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await charges('reused')).toBe(1);
  });

  it('refuses bad input with a typed error and writes nothing', async () => {
    const run = (key: string, extra: IdempotencyOptions = {}) => withIdempotency(db, key, (tx) => chargeOn(tx, 'bad-input', 1), o(extra)).catch((e: unknown) => e);
    expect(await run('')).toBeInstanceOf(IdempotencyKeyInvalidError);
    expect(await run('k'.repeat(256))).toBeInstanceOf(IdempotencyKeyInvalidError);
    expect(await run('bad\u0000nul')).toBeInstanceOf(IdempotencyKeyInvalidError);
    expect(await run('bad-ttl', { ttl: -1 })).toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(await charges('bad-input')).toBe(0);
    expect(await countOn(db, 'idempotency_keys', sql`key = 'bad-ttl' or key like 'bad%'`)).toBe(0);
  });

  it('keeps neither the key nor the writes of fn when fn throws, and runs fn again on the retry', async () => {
    const error = await withIdempotency(db, 'throws', async (tx) => {
      await chargeOn(tx, 'throws', 1);
      throw new Error('declined');
    }, o()).catch((e: unknown) => e);
    expect((error as Error).message).toBe('declined');
    expect(await charges('throws')).toBe(0);
    expect(await keys('throws')).toBe(0);
    expect((await withIdempotencyOutcome(db, 'throws', (tx) => chargeOn(tx, 'throws', 1), o())).replayed).toBe(false);
    expect(await charges('throws')).toBe(1);
  });

  it("runs the transaction again when Postgres fails one of fn's statements with a serialization failure, and keeps one effect", async () => {
    const conflict = sql`do $$ begin raise exception 'could not serialize, for this test' using errcode = 'serialization_failure'; end $$`;
    let runs = 0;
    const fn = async (tx: IdempotencyDatabase) => {
      runs++;
      const charge = await chargeOn(tx, 'fn-conflict', 1);
      if (runs === 1) await tx.execute(conflict);
      return charge;
    };
    expect((await withIdempotencyOutcome(db, 'fn-conflict', fn, o())).replayed).toBe(false);
    expect(runs).toBe(2);
    expect(await charges('fn-conflict')).toBe(1);
    expect(await completedKeys('fn-conflict')).toBe(1);
    // Retries used up: the typed error, with Postgres' own words as its cause, and nothing kept.
    runs = 0;
    const error = await withIdempotency(db, 'fn-conflict-no-retries', fn, o({ serializationRetries: 0 })).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_SERIALIZATION_FAILURE', cause: { code: '40001', message: 'could not serialize, for this test' } });
    expect(await charges('fn-conflict-no-retries')).toBe(0);
    expect(await keys('fn-conflict-no-retries')).toBe(0);
  });

  it("rolls back only its savepoint when fn throws inside the caller's transaction, which commits the rest", async () => {
    await db.transaction(async (tx) => {
      await chargeOn(tx, 'caller-write', 1);
      await withIdempotency(tx, 'sp-throws', async (inner) => {
        await chargeOn(inner, 'sp-throws', 1);
        throw new Error('declined');
      }, o()).catch(() => undefined);
      await withIdempotency(tx, 'sp-ok', (inner) => chargeOn(inner, 'sp-ok', 1), o());
    });
    expect(await charges('caller-write')).toBe(1);
    expect(await charges('sp-throws')).toBe(0);
    expect(await keys('sp-throws')).toBe(0);
    expect(await charges('sp-ok')).toBe(1);
    expect(await completedKeys('sp-ok')).toBe(1);
  });

  it("keeps fn's writes around a nested transaction of fn's own that rolled back", async () => {
    const value = await withIdempotency(db, 'nested', async (tx) => {
      await tx.transaction(async (inner) => {
        await chargeOn(inner, 'nested-rolled-back', 1);
        throw new Error('inner');
      }).catch(() => undefined);
      return chargeOn(tx, 'nested', 1);
    }, o());
    expect(value).toMatchObject({ amount: 1 });
    expect(await charges('nested-rolled-back')).toBe(0);
    expect(await charges('nested')).toBe(1);
    expect(await completedKeys('nested')).toBe(1);
  });

  it('runs fn again once the key has expired, and replays the new result', async () => {
    const first = await withIdempotency(db, 'expired', (tx) => chargeOn(tx, 'expired', 1), o());
    await db.execute(sql`update idempotency_keys set expires_at = now() - interval '1 second' where key = 'expired'`);
    const second = await withIdempotencyOutcome(db, 'expired', (tx) => chargeOn(tx, 'expired', 2), o());
    expect(second.replayed).toBe(false);
    expect(second.value).not.toEqual(first);
    expect(await withIdempotency(db, 'expired', async () => 'must not run', o())).toEqual(second.value);
    expect(await charges('expired')).toBe(2);
    expect(await completedKeys('expired')).toBe(1);
  });

  it('migrates into a schema of its own (twice, the second a no-op) and works there', async () => {
    const schema = `mig_${Math.random().toString(36).slice(2, 8)}`;
    await migrate(db, { schema });
    await migrate(db, { schema });
    expect(await withIdempotency(db, 'in-schema', async () => 'stored', o({ schema }))).toBe('stored');
    expect(await withIdempotencyOutcome(db, 'in-schema', async () => 'ran again', o({ schema }))).toEqual({ value: 'stored', replayed: true });
    const rows = await rowsOn<{ n: number }>(db, sql`select count(*)::int as n from ${sql.identifier(schema)}.idempotency_keys`);
    expect(Number(rows[0]!.n)).toBe(1);
    expect(await keys('in-schema')).toBe(0);
  });

  describe.each(LEVELS)('%s', (isolationLevel) => {
    /** fn for the races: one charge, held open a little so duplicates pile up on the claim. */
    const chargeOnce = (ref: string, calls: { n: number }) => async (tx: IdempotencyDatabase) => {
      calls.n++;
      const charge = await chargeOn(tx, ref, 500);
      await sleep(20);
      return charge;
    };

    it(`runs fn once for ${CALLERS} concurrent callers given the database, and replays it to the rest`, async () => {
      const ref = `db-${isolationLevel}`;
      const calls = { n: 0 };
      const results = await Promise.all(
        Array.from({ length: CALLERS }, () =>
          withIdempotencyOutcome(db, ref, chargeOnce(ref, calls), o({ transaction: { isolationLevel }, serializationRetries: 5 })),
        ),
      );
      expect(calls.n).toBe(1);
      expect(results.filter((r) => r.replayed)).toHaveLength(CALLERS - 1);
      expect(new Set(results.map((r) => JSON.stringify(r.value))).size).toBe(1);
      expect(await charges(ref)).toBe(1);
      expect(await completedKeys(ref)).toBe(1);
    });

    twoConnections(`runs fn once for ${CALLERS} concurrent callers in transactions of their own, who retry the retryable error`, async () => {
      const ref = `own-${isolationLevel}`;
      const calls = { n: 0 };
      let retries = 0;
      const results = await Promise.all(
        Array.from({ length: CALLERS }, () =>
          retryTransaction(
            () => db.transaction((tx) => withIdempotencyOutcome(tx, ref, chargeOnce(ref, calls), o()), { isolationLevel }),
            () => retries++,
            CALLERS,
          ),
        ),
      );
      expect(calls.n).toBe(1);
      expect(results.filter((r) => !r.replayed)).toHaveLength(1);
      expect(new Set(results.map((r) => JSON.stringify(r.value))).size).toBe(1);
      // Postgres answers blocked duplicates with 40001 only above READ COMMITTED.
      if (isolationLevel === 'read committed') expect(retries).toBe(0);
      else expect(retries).toBeGreaterThan(0);
      expect(await charges(ref)).toBe(1);
      expect(await completedKeys(ref)).toBe(1);
    });
  });

  twoConnections("answers a duplicate in flight with IDEMPOTENCY_IN_FLIGHT under 'reject', then replays", async () => {
    const inside = deferred();
    const release = deferred();
    const first = withIdempotency(db, 'in-flight', async (tx) => {
      const charge = await chargeOn(tx, 'in-flight', 1);
      inside.resolve();
      await release.promise;
      return charge;
    }, o());
    await inside.promise;
    const error = await withIdempotency(db, 'in-flight', async () => 'must not run', o({ onInFlight: 'reject' })).catch((e: unknown) => e);
    release.resolve();
    const value = await first;
    expect(error).toBeInstanceOf(IdempotencyInFlightError);
    expect(await withIdempotencyOutcome(db, 'in-flight', async () => 'must not run', o())).toEqual({ value, replayed: true });
    expect(await charges('in-flight')).toBe(1);
    expect(await completedKeys('in-flight')).toBe(1);
  });

  describe('a duplicate from a second pool of the same driver (as from another process)', () => {
    let second: OpenDriver | undefined;
    const other = async () => {
      const t = databases.get(driver)!;
      second ??= await driver.open(t.url, t.name);
      return second.db;
    };
    afterAll(() => second?.close());

    twoConnections('waits on the row lock of the first and replays its result once it commits', async () => {
      const inside = deferred();
      const release = deferred();
      const first = withIdempotency(db, 'cross-pool', async (tx) => {
        const charge = await chargeOn(tx, 'cross-pool', 1);
        inside.resolve();
        await release.promise;
        return charge;
      }, o());
      await inside.promise;
      const duplicate = withIdempotencyOutcome(await other(), 'cross-pool', (tx) => chargeOn(tx, 'cross-pool', 1), o());
      await sleep(50); // let it reach its claim, behind the first's uncommitted row
      release.resolve();
      const value = await first;
      expect(await duplicate).toEqual({ value, replayed: true });
      expect(await charges('cross-pool')).toBe(1);
      expect(await completedKeys('cross-pool')).toBe(1);
    });

    twoConnections('gives up with IDEMPOTENCY_IN_FLIGHT once waitTimeout has passed, running nothing', async () => {
      const inside = deferred();
      const release = deferred();
      const first = withIdempotency(db, 'cross-timeout', async (tx) => {
        const charge = await chargeOn(tx, 'cross-timeout', 1);
        inside.resolve();
        await release.promise;
        return charge;
      }, o());
      await inside.promise;
      const error = await withIdempotency(await other(), 'cross-timeout', async () => 'must not run', o({ waitTimeout: 100 })).catch((e: unknown) => e);
      release.resolve();
      await first;
      expect(error).toBeInstanceOf(IdempotencyInFlightError);
      expect(await charges('cross-timeout')).toBe(1);
      expect(await completedKeys('cross-timeout')).toBe(1);
    });
  });

  twoConnections("lets a duplicate claim the key the moment the first rolls back to its savepoint, the first's transaction still open", async () => {
    const rolledBack = deferred();
    const finish = deferred();
    const outer = db.transaction(async (tx) => {
      await withIdempotency(tx, 'sp-release', async () => {
        throw new Error('inner failure');
      }, o()).catch(() => undefined);
      rolledBack.resolve();
      await finish.promise;
    });
    await rolledBack.promise;
    const second = await withIdempotencyOutcome(db, 'sp-release', (tx) => chargeOn(tx, 'sp-release', 1), o({ onInFlight: 'reject' }));
    finish.resolve();
    await outer;
    expect(second.replayed).toBe(false);
    expect(await charges('sp-release')).toBe(1);
    expect(await completedKeys('sp-release')).toBe(1);
  });
});

describe('@neondatabase/serverless', () => {
  it('reached the test server over WebSockets, through the local proxy', async () => {
    expect(await proxiedConnections()).toBeGreaterThan(0);
  });
});
