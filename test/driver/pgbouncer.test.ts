// Named prepared statements behind PgBouncer in transaction pooling mode
// (.ci/run starts it and sets PGBOUNCER_URL). The core suite runs through it
// in test/drivers/; this file makes the one case it depends on happen for
// sure: a client's next transaction lands on another server connection,
// where the statement it prepared does not exist.
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { sqlState } from '../../src/driver/pg-error.js';
import { withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { pgbouncerUrl } from '../support/drivers.js';
import { count, createBusinessTables, insertCharge } from '../support/fixtures.js';
import { onAnotherServerConnection } from '../support/pgbouncer.js';
import { withDatabase } from '../support/urls.js';

const t = await testDatabase();
await createBusinessTables(t.pool);
const url = pgbouncerUrl ? withDatabase(pgbouncerUrl, t.name) : '';
const pools: pg.Pool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.end())));

/** A pool of one client connection to PgBouncer, so that node-postgres remembers what it prepared on it. */
function onePooledClient() {
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  pool.on('error', () => {});
  pools.push(pool);
  return drizzle({ client: pool });
}

describe.skipIf(!pgbouncerUrl)('behind PgBouncer in transaction mode (PGBOUNCER_URL)', () => {
  it('with prepare unset: goes back to unnamed statements when PgBouncer hands the claim to a server connection that lacks it, and runs fn once', async () => {
    const db = onePooledClient();
    await withIdempotencyOutcome(db, 'bouncer-1', (tx) => insertCharge(tx, 'bouncer-1', 1));
    let calls = 0;
    const outcome = await onAnotherServerConnection(url, () =>
      withIdempotencyOutcome(db, 'bouncer-2', async (tx) => {
        calls++;
        return insertCharge(tx, 'bouncer-2', 1);
      }),
    );
    expect(outcome.replayed).toBe(false);
    expect(calls).toBe(1);
    expect(await withIdempotencyOutcome(db, 'bouncer-1', async () => 'must not run')).toMatchObject({ replayed: true });
    expect(await count(t.pool, 'charges', `ref in ('bouncer-1', 'bouncer-2')`)).toBe(2);
    expect(await count(t.pool, 'idempotency_keys', `key in ('bouncer-1', 'bouncer-2') and status = 'completed'`)).toBe(2);
  });

  it('with prepare: true: fails calls with "prepared statement does not exist" or "already exists" (26000, 42P05), writing nothing of them', async () => {
    // Server connections are shared by every client: a name this client
    // prepared is missing on the next one, and one another client prepared is
    // already there, while node-postgres remembers only its own.
    const db = onePooledClient();
    const run = (key: string) => withIdempotencyOutcome(db, key, (tx) => insertCharge(tx, key, 1), { prepare: true }).then(() => undefined, (e: unknown) => e);
    const errors = [await run('bouncer-3'), await onAnotherServerConnection(url, () => run('bouncer-4'))];
    const codes = errors.filter((e) => e !== undefined).map(sqlState);
    expect(codes.length).toBeGreaterThan(0);
    for (const code of codes) expect(['26000', '42P05']).toContain(code);
    for (const [i, key] of ['bouncer-3', 'bouncer-4'].entries()) {
      const kept = errors[i] === undefined ? 1 : 0;
      expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(kept);
      expect(await count(t.pool, 'idempotency_keys', `key = $1 and status = 'completed'`, [key])).toBe(kept);
    }
  });

  it('with prepare: false: runs on any server connection', async () => {
    const db = onePooledClient();
    await withIdempotencyOutcome(db, 'bouncer-5', (tx) => insertCharge(tx, 'bouncer-5', 1), { prepare: false });
    const outcome = await onAnotherServerConnection(url, () =>
      withIdempotencyOutcome(db, 'bouncer-6', (tx) => insertCharge(tx, 'bouncer-6', 1), { prepare: false }),
    );
    expect(outcome.replayed).toBe(false);
    expect(await count(t.pool, 'idempotency_keys', `key in ('bouncer-5', 'bouncer-6') and status = 'completed'`)).toBe(2);
  });
});

describe.skipIf(pgbouncerUrl)('without PgBouncer', () => {
  it.skip('runs the PgBouncer tests: skipped, PGBOUNCER_URL is not set (.ci/run starts PgBouncer and sets it)', () => {});
});
