// The sweep on every driver of test/support/drivers.ts: it deletes expired
// keys in batches, keeps live ones, and an expired key then runs again.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { sweepExpiredKeys, withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase, type TestDatabase } from '../support/db.js';
import { closeDrivers, countOn, DRIVERS, type DriverUnderTest, type OpenDriver } from '../support/drivers.js';

const databases = new Map<DriverUnderTest, TestDatabase>();
for (const driver of DRIVERS) if (!driver.unavailable && !driver.oneConnection) databases.set(driver, await testDatabase());
afterAll(closeDrivers);

describe.each(DRIVERS)('sweepExpiredKeys on $name', (driver: DriverUnderTest) => {
  if (driver.unavailable) {
    it.skip(`sweeps: skipped, ${driver.unavailable}`, () => {});
    return;
  }
  let open: OpenDriver;
  let db: IdempotencyDatabase;
  beforeAll(async () => {
    const t = databases.get(driver);
    open = await driver.open(t?.url ?? '', t?.name ?? '');
    db = open.db;
  });
  afterAll(() => open?.close());

  it('deletes the expired keys in batches and keeps the live ones; an expired key then runs again', async () => {
    for (let i = 0; i < 7; i++) await withIdempotencyOutcome(db, `sweep-${i}`, async () => i, driver.options);
    await db.execute(sql`update idempotency_keys set expires_at = now() - interval '1 minute' where key in ('sweep-0', 'sweep-1', 'sweep-2', 'sweep-3', 'sweep-4')`);
    const result = await sweepExpiredKeys(db, { batchSize: 2 });
    expect(result).toMatchObject({ deleted: 5, batches: 3, stoppedBy: 'drained' });
    expect(await countOn(db, 'idempotency_keys', sql`key like 'sweep-%'`)).toBe(2);
    expect(await countOn(db, 'idempotency_keys', sql`key in ('sweep-5', 'sweep-6')`)).toBe(2);
    expect(await withIdempotencyOutcome(db, 'sweep-0', async () => 'again', driver.options)).toEqual({ value: 'again', replayed: false });
    expect(await withIdempotencyOutcome(db, 'sweep-5', async () => 'must not run', driver.options)).toEqual({ value: 5, replayed: true });
  });
});
