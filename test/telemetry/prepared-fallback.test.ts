import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge } from '../support/fixtures.js';
import { recordEvents } from '../support/telemetry.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

describe('a call run again because the server refused a named statement (as PgBouncer without prepared statements does)', () => {
  it('tells the attempt whose store was refused as rolled back, so that each claim is followed by its end', async () => {
    const pool = t.newPool(1);
    const single = drizzle({ client: pool });
    await withIdempotencyOutcome(single, 'fallback-warm', async () => 'warm'); // claim and store now named on the connection
    const events = recordEvents();
    let runs = 0;
    const outcome = await withIdempotencyOutcome(single, 'fallback-store', async (tx) => {
      // The server forgets the statements behind node-postgres' back, after the claim: the store is refused.
      if (++runs === 1) await tx.execute(sql`deallocate all`);
      return insertCharge(tx, 'fallback-store', 1);
    });
    expect(outcome.replayed).toBe(false);
    expect(runs).toBe(2);
    expect(await count(t.pool, 'charges', `ref = 'fallback-store'`)).toBe(1);
    expect(events.names('', 'fallback-store')).toEqual(['claimed', 'rolled-back', 'claimed', 'stored', 'call']);
    expect(events.of('', 'fallback-store')[1]!.message).toMatchObject({ phase: 'store', error: 'PreparedStatementsRefused' });
    expect(events.of('', 'fallback-store')[4]!.message).toMatchObject({ outcome: 'executed' });
  });
});
