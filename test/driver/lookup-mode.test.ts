import { drizzle } from 'drizzle-orm/node-postgres';
import { describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';
import { logStatements } from '../support/query-log.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

/** A pipelined pool of its own (each pool keeps its own share of lookups that found an answer), and what it sends. */
function pipelinedPool() {
  const pool = t.newPool(4, { pipeline: true });
  return { db: drizzle({ client: pool }), events: logStatements(pool), pool };
}

const charge = (db: ReturnType<typeof drizzle>, key: string, amount = 100) =>
  withIdempotencyOutcome(db, key, (tx) => insertCharge(tx, key, amount), { lookupFirst: true, fingerprint: { amount } });

const sent = (events: string[]) => events.filter((e) => e === 'write' || e.startsWith('send '));

/** First executions until lookups rarely find an answer on this pool. */
async function mostlyNewKeys(db: ReturnType<typeof drizzle>, prefix: string): Promise<void> {
  for (let i = 0; i < 40; i++) await charge(db, `${prefix}-${i}`);
}

const idleInTransaction = () => count(t.pool, 'pg_stat_activity', `datname = current_database() and state like 'idle in transaction%'`);

describe('lookupFirst on a pipelined node-postgres pool', () => {
  it('sends the lookup alone, before any transaction, on a new pool: one statement for a replay', async () => {
    const { db, events } = pipelinedPool();
    const first = await charge(db, 'alone-1');
    events.length = 0;
    const again = await charge(db, 'alone-1');
    expect(again).toEqual({ value: first.value, replayed: true });
    expect(sent(events)).toEqual(['send lookup', 'write']);
  });

  it('sends the lookup in the same write as BEGIN and the claim once lookups rarely find an answer', async () => {
    const { db, events } = pipelinedPool();
    await mostlyNewKeys(db, 'ahead-new');
    events.length = 0;
    const outcome = await charge(db, 'ahead-first');
    expect(outcome.replayed).toBe(false);
    expect(sent(events)).toEqual(['send lookup', 'send BEGIN', 'send claim', 'write', 'send INSERT charge', 'write', 'send store', 'send COMMIT', 'write']);
    expect(await count(t.pool, 'charges', 'ref = $1', ['ahead-first'])).toBe(1);
  });

  it('replays the stored answer through that write and rolls the claim back: fn never runs, nothing is written', async () => {
    const { db, events, pool } = pipelinedPool();
    await mostlyNewKeys(db, 'ahead-replay-new');
    const first = await charge(db, 'ahead-replay');
    const before = await keyRows(t.pool);
    events.length = 0;
    const again = await withIdempotencyOutcome(db, 'ahead-replay', () => Promise.reject(new Error('ran twice')), {
      lookupFirst: true,
      fingerprint: { amount: 100 },
    });
    expect(again).toEqual({ value: first.value, replayed: true });
    expect(sent(events)).toEqual(['send lookup', 'send BEGIN', 'send claim', 'write', 'send ROLLBACK', 'write']);
    expect(await keyRows(t.pool)).toEqual(before);
    expect(await count(t.pool, 'charges', 'ref = $1', ['ahead-replay'])).toBe(1);
    expect(pool.totalCount).toBe(pool.idleCount);
    expect(await idleInTransaction()).toBe(0);
  });

  it('refuses a key reused with another fingerprint through that write, and changes nothing', async () => {
    const { db, pool } = pipelinedPool();
    await mostlyNewKeys(db, 'ahead-reuse-new');
    await charge(db, 'ahead-reuse', 100);
    const before = await keyRows(t.pool);
    await expect(charge(db, 'ahead-reuse', 999)).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    expect(await keyRows(t.pool)).toEqual(before);
    expect(await count(t.pool, 'charges', 'ref = $1', ['ahead-reuse'])).toBe(1);
    expect(pool.totalCount).toBe(pool.idleCount);
    expect(await idleInTransaction()).toBe(0);
  });

  it('runs fn once for 30 concurrent duplicates of a new key in either mode, and gives each the same answer', async () => {
    for (const mode of ['alone', 'ahead'] as const) {
      const { db } = pipelinedPool();
      if (mode === 'ahead') await mostlyNewKeys(db, `storm-${mode}-new`);
      const key = `storm-${mode}`;
      const results = await Promise.all(Array.from({ length: 30 }, () => charge(db, key)));
      expect(results.filter((r) => !r.replayed)).toHaveLength(1);
      expect(new Set(results.map((r) => JSON.stringify(r.value))).size).toBe(1);
      expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
      expect(await count(t.pool, 'idempotency_keys', `key = $1 and status = 'completed'`, [key])).toBe(1);
    }
    expect(await idleInTransaction()).toBe(0);
  });

  it('goes back to sending the lookup alone once most lookups find an answer (a retry storm)', async () => {
    const { db, events } = pipelinedPool();
    await mostlyNewKeys(db, 'storm-back-new');
    for (let i = 0; i < 40; i++) expect((await charge(db, `storm-back-new-${i % 5}`)).replayed).toBe(true);
    events.length = 0;
    expect((await charge(db, 'storm-back-new-0')).replayed).toBe(true);
    expect(sent(events)).toEqual(['send lookup', 'write']);
  });
});
