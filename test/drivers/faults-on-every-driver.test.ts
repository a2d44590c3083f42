// A backend terminated in the middle of fn (a failover, an operator's
// pg_terminate_backend), on every driver with a pool of connections: the
// call fails with the retryable IDEMPOTENCY_CONNECTION_LOST, nothing of it
// commits, and the same database keeps serving.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase, type TestDatabase } from '../support/db.js';
import { chargeOn, closeDrivers, countOn, DRIVERS, rowsOn, type DriverUnderTest, type OpenDriver } from '../support/drivers.js';
import { deferred } from '../support/fixtures.js';

const POOLED = DRIVERS.filter((d) => !d.oneConnection);
const databases = new Map<DriverUnderTest, TestDatabase>();
for (const driver of POOLED) if (!driver.unavailable && !driver.name.startsWith('postgres.js')) databases.set(driver, await testDatabase());
afterAll(closeDrivers);

// postgres.js 3.4.9, with or without this library: when the backend of a
// transaction's connection dies, the transaction fails with CONNECTION_CLOSED,
// then the driver's own ROLLBACK on that connection throws a TypeError from a
// timer, which ends the process (https://github.com/porsager/postgres/issues/1208).
const DRIVER_BUG = 'postgres.js 3.4.9 ends the process when the backend of a transaction dies (porsager/postgres#1208)';

describe.each(POOLED)('a backend terminated in the middle of fn, on $name', (driver: DriverUnderTest) => {
  const unavailable = driver.unavailable ?? (driver.name.startsWith('postgres.js') ? DRIVER_BUG : undefined);
  if (unavailable) {
    it.skip(`fails the call: skipped, ${unavailable}`, () => {});
    return;
  }
  let t: TestDatabase;
  let open: OpenDriver;
  let db: IdempotencyDatabase;
  beforeAll(async () => {
    t = databases.get(driver)!;
    open = await driver.open(t.url, t.name);
    db = open.db;
    await db.execute(sql`create table if not exists charges (id serial primary key, ref text not null, amount integer not null)`);
  });
  afterAll(() => open?.close());

  it('fails the call with IDEMPOTENCY_CONNECTION_LOST, commits nothing, and the retry runs once', async () => {
    const killed = deferred<number>();
    const resume = deferred();
    const victim = withIdempotencyOutcome(db, 'killed', async (tx) => {
      await chargeOn(tx, 'killed', 1);
      const [row] = await rowsOn<{ pid: number }>(tx, sql`select pg_backend_pid() as pid`);
      killed.resolve(row!.pid);
      await resume.promise;
      return chargeOn(tx, 'killed-second-write', 1);
    }, driver.options);
    const pid = await killed.promise;
    await t.pool.query('select pg_terminate_backend($1)', [pid]);
    resume.resolve();
    const error = await victim.catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_CONNECTION_LOST', retryable: true });

    const retry = await withIdempotencyOutcome(db, 'killed', (tx) => chargeOn(tx, 'killed', 1), driver.options);
    expect(retry.replayed).toBe(false);
    expect(await countOn(db, 'charges', sql`ref = 'killed'`)).toBe(1);
    expect(await countOn(db, 'charges', sql`ref = 'killed-second-write'`)).toBe(0);
    expect(await countOn(db, 'idempotency_keys', sql`key = 'killed' and status = 'completed'`)).toBe(1);
  });
});
