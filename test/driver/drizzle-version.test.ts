import { entityKind } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { isTransaction } from '../../src/driver/database.js';
import { withIdempotency } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { keyRows } from '../support/fixtures.js';

const t = await testDatabase();

// The drizzle entity names along an object's class chain: 1.0 renamed the
// PostgreSQL base classes (PgDatabase became PgAsyncDatabase, PgTransaction
// PgAsyncTransaction), which is how this file knows which drizzle it runs on.
function kinds(value: object): string[] {
  const found: string[] = [];
  for (let proto: unknown = Object.getPrototypeOf(value); proto; proto = Object.getPrototypeOf(proto)) {
    const kind = (proto as { constructor?: { [entityKind]?: unknown } }).constructor?.[entityKind];
    if (typeof kind === 'string' && !found.includes(kind)) found.push(kind);
  }
  return found;
}

// scripts/test-drizzle1.sh sets DRIZZLE_ORM_MAJOR=1; the main run is on 0.44+.
const major = process.env.DRIZZLE_ORM_MAJOR ?? '0';

describe(`on drizzle-orm ${major === '1' ? '1.0' : '0.44+'}`, () => {
  it('runs on the drizzle-orm this run asked for', () => {
    expect(kinds(t.db)).toContain(major === '1' ? 'PgAsyncDatabase' : 'PgDatabase');
  });

  it('tells transactions, nested ones included, from databases', async () => {
    expect(isTransaction(t.db)).toBe(false);
    const seen = await t.db.transaction(async (tx) => [isTransaction(tx), await tx.transaction(async (nested) => isTransaction(nested))]);
    expect(seen).toEqual([true, true]);
  });

  it("joins the caller's transaction, and the key commits with it", async () => {
    const outcome = await t.db.transaction(async (tx) => [await withIdempotency(tx, 'joined', async () => 'first'), await withIdempotency(tx, 'joined', async () => 'second')]);
    expect(outcome).toEqual(['first', 'first']);
    expect((await keyRows(t.pool)).filter((r) => r.key === 'joined')).toHaveLength(1);
  });
});
