// postgres.js with its default `prepare: true` behind PgBouncer in transaction
// pooling mode (.ci/run starts it and sets PGBOUNCER_URL). postgres.js sends
// the COMMIT of `begin()` as a named prepared statement; when the next
// transaction of the same client lands on another server connection, the
// server does not know that name (26000), the transaction aborts, postgres.js
// sends COMMIT again on it, and Postgres turns it into a ROLLBACK without an
// error (porsager/postgres#1212). A call that returns must have committed.
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { chargeOn, pgbouncerUrl } from '../support/drivers.js';
import { count, createBusinessTables } from '../support/fixtures.js';
import { onAnotherServerConnection } from '../support/pgbouncer.js';
import { withDatabase } from '../support/urls.js';

const t = await testDatabase();
await createBusinessTables(t.pool);
const url = pgbouncerUrl ? withDatabase(pgbouncerUrl, t.name) : '';
const clients: postgres.Sql[] = [];
afterAll(() => Promise.all(clients.map((c) => c.end({ timeout: 5 }))));

/** postgres.js on one client connection to PgBouncer, `prepare` left at its default (true). */
function onePostgresJsConnection() {
  const client = postgres(url, { max: 1, onnotice: () => {} });
  clients.push(client);
  return drizzle({ client });
}

describe.skipIf(!pgbouncerUrl)("postgres.js with prepare: true (its default) behind PgBouncer's transaction mode", () => {
  it('never returns a first execution whose COMMIT the server turned into a ROLLBACK: what a call returns has committed', async () => {
    const db = onePostgresJsConnection();
    const outcomes: string[] = [];
    for (const key of ['pjs-bouncer-1', 'pjs-bouncer-2', 'pjs-bouncer-3']) {
      const run = () => withIdempotencyOutcome(db, key, (tx) => chargeOn(tx, key, 1));
      const outcome = await (key === 'pjs-bouncer-1' ? run() : onAnotherServerConnection(url, run)).then(
        () => 'returned',
        (e: unknown) => `failed: ${(e as { code?: string }).code}`,
      );
      outcomes.push(outcome);
      const kept = outcome === 'returned' ? 1 : 0;
      expect({ key, outcome, charges: await count(t.pool, 'charges', 'ref = $1', [key]) }).toEqual({ key, outcome, charges: kept });
      expect(await count(t.pool, 'idempotency_keys', `key = $1 and status = 'completed'`, [key])).toBe(kept);
    }
    expect(outcomes).toEqual(['returned', 'returned', 'returned']);
  });
});

describe.skipIf(pgbouncerUrl)('postgres.js without PgBouncer', () => {
  it.skip('runs the PgBouncer tests: skipped, PGBOUNCER_URL is not set (.ci/run starts PgBouncer and sets it)', () => {});
});
