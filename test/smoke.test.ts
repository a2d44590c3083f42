import { describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../src/index.js';
import { testDatabase } from './support/db.js';
import { count, createBusinessTables, insertCharge } from './support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

describe('smoke', () => {
  it('runs once and replays', async () => {
    const a = await withIdempotencyOutcome(t.db, 'k1', (tx) => insertCharge(tx, 'k1', 5));
    const b = await withIdempotencyOutcome(t.db, 'k1', (tx) => insertCharge(tx, 'k1', 5));
    expect(a.replayed).toBe(false);
    expect(b).toEqual({ value: a.value, replayed: true });
    expect(await count(t.pool, 'charges')).toBe(1);
  });
});
