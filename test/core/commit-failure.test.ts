// Issue 18, item 8: a COMMIT that fails, seen from code. Given a database,
// withIdempotency opens the transaction, so its COMMIT is the library's: the
// caller gets IdempotencyCommitFailedError (IDEMPOTENCY_COMMIT_FAILED,
// retryable: retry with the same key), the typed error HTTP callers see as 503.
// A deferred constraint trigger makes fn and the store succeed and COMMIT fail.
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IdempotencyCommitFailedError,
  IdempotencyError,
  migrate,
  withIdempotency,
  withIdempotencyOutcome,
  type IdempotencyDatabase,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();

// Every row of ledger is refused, but only when the transaction commits.
const LEDGER = `
  create table ledger (entry text not null);
  create function refuse_at_commit() returns trigger language plpgsql as $$
    begin raise exception 'ledger refused at commit' using errcode = 'check_violation'; end $$;
  create constraint trigger ledger_refused after insert on ledger deferrable initially deferred
    for each row execute function refuse_at_commit();`;

const write = (entry: string) => async (tx: IdempotencyDatabase) => {
  await tx.execute(sql`insert into ledger (entry) values (${entry})`);
  return { entry, secret: 'card 4242' };
};

beforeAll(() => t.pool.query(LEDGER));

const ledgerRows = async () => Number((await t.pool.query<{ n: string }>('select count(*) as n from ledger')).rows[0]!.n);
const keyRows = async (key: string) =>
  Number((await t.pool.query<{ n: string }>('select count(*) as n from idempotency_keys where key = $1', [key])).rows[0]!.n);

describe('a COMMIT that fails in the transaction withIdempotency opened', () => {
  it.each([
    ['a pg pool', () => t.db],
    ['a pg pool in pipeline mode (the store and COMMIT sent together)', () => drizzle({ client: t.newPool(2, { pipeline: true }) })],
  ])('on %s: IdempotencyCommitFailedError, retryable, and nothing committed', async (_name, make) => {
    const db = make();
    const key = `commit-fails ${_name}`;
    const error = await withIdempotency(db, key, write(key), { scope: 'alice' }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(IdempotencyCommitFailedError);
    expect(error).toBeInstanceOf(IdempotencyError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_COMMIT_FAILED', status: 503, retryable: true });
    // The driver's SQLSTATE for whoever wants it, never the result that was to be stored.
    expect((error as Error).cause).toMatchObject({ code: '23514' });
    expect(JSON.stringify(error) + String(error)).not.toContain('4242');
    expect(await ledgerRows()).toBe(0);
    expect(await keyRows(key)).toBe(0);
  });

  it('is worth retrying with the same key: once the cause is gone, fn runs once', async () => {
    const key = 'commit-fails then works';
    await expect(withIdempotency(t.db, key, write(key), { scope: 'bob' })).rejects.toBeInstanceOf(IdempotencyCommitFailedError);
    await t.pool.query('alter table ledger disable trigger ledger_refused');
    try {
      expect(await withIdempotencyOutcome(t.db, key, write(key), { scope: 'bob' })).toMatchObject({ replayed: false });
      expect(await withIdempotencyOutcome(t.db, key, write(key), { scope: 'bob' })).toMatchObject({ replayed: true });
      expect(await ledgerRows()).toBe(1);
    } finally {
      await t.pool.query('alter table ledger enable trigger ledger_refused; delete from ledger');
    }
  });

  describe('on PGlite', () => {
    const client = new PGlite();
    const db = drizzlePglite({ client });
    afterAll(() => client.close());

    it('is the same typed error', async () => {
      await migrate(db);
      await client.exec(LEDGER);
      await expect(withIdempotency(db, 'commit-fails', write('pglite'))).rejects.toBeInstanceOf(IdempotencyCommitFailedError);
      expect((await client.query('select * from ledger')).rows).toEqual([]);
    });
  });
});

describe('a COMMIT that fails in your own transaction', () => {
  it("is your transaction's error, as the driver reports it: the library never saw the COMMIT", async () => {
    const key = 'caller-commit-fails';
    const error = await t.db.transaction((tx) => withIdempotency(tx, key, write(key), { scope: 'carol' })).catch((e: unknown) => e);

    expect(error).not.toBeInstanceOf(IdempotencyError);
    expect(error).toBeInstanceOf(Error);
    expect(await keyRows(key)).toBe(0);
  });
});
