import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { isTransaction } from '../../src/driver/database.js';
import { withIdempotency } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { drizzleKinds as kinds } from '../support/drizzle-kinds.js';
import { drizzleMajor } from '../support/drizzle-version.js';
import { keyRows } from '../support/fixtures.js';

const t = await testDatabase();

describe(`on drizzle-orm ${drizzleMajor === 1 ? '1.0' : '0.44+'}`, () => {
  it('runs on the drizzle-orm this run asked for', () => {
    expect(kinds(t.db)).toContain(drizzleMajor === 1 ? 'PgAsyncDatabase' : 'PgDatabase');
  });

  it('is the drizzle-orm of the child processes the tests start with tsx too', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'test/support/drizzle-kinds-child.ts']);
    expect(JSON.parse(stdout)).toEqual(kinds(t.db));
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

describe('the transaction option', () => {
  // drizzle-orm 1.0's transaction config adds `snapshot` (SET TRANSACTION
  // SNAPSHOT); the transaction the library opens itself on a node-postgres pool
  // would leave it out without a word, while drizzle's own applies it.
  it('refuses a snapshot with IDEMPOTENCY_OPTIONS_INVALID before anything runs, on any driver', async () => {
    let ran = false;
    const call = withIdempotency(t.db, 'with-snapshot', async () => (ran = true), {
      transaction: { isolationLevel: 'repeatable read', snapshot: '00000003-0000001B-1' } as never,
    });
    await expect(call).rejects.toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
    expect(ran).toBe(false);
    expect((await keyRows(t.pool)).filter((r) => r.key === 'with-snapshot')).toHaveLength(0);
  });
});
