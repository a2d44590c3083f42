import { inspect } from 'node:util';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { fingerprintOf, IdempotencyError, withIdempotency, withIdempotencyOutcome } from '../../src/index.js';
import { waitForLockWaiters } from '../support/activity.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge } from '../support/fixtures.js';

// What the database says goes back to the caller as a typed error with a
// stable code, never as a raw driver error, and never with customer data.
const t = await testDatabase();
await createBusinessTables(t.pool);

const codeOf = (error: unknown) => (error as IdempotencyError).code;

/** Holds `key` claimed in an open transaction until `release` is called. */
async function holdKey(key: string) {
  const entered = deferred();
  const release = deferred();
  const done = withIdempotency(t.db, key, async () => {
    entered.resolve();
    await release.promise;
    return 'first';
  });
  await entered.promise;
  return { release: () => release.resolve(), done };
}

describe('a transaction that had already failed', () => {
  it('gets IDEMPOTENCY_TRANSACTION_ABORTED, and fn does not run', async () => {
    let ran = false;
    const error = await t.db
      .transaction(async (tx) => {
        await tx.execute(sql`select 1 / 0`).catch(() => {});
        await withIdempotency(tx, 'aborted', async () => (ran = true));
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyError);
    expect(codeOf(error)).toBe('IDEMPOTENCY_TRANSACTION_ABORTED');
    expect((error as IdempotencyError).retryable).toBe(false);
    expect(ran).toBe(false);
    expect(await count(t.pool, 'idempotency_keys', `key = 'aborted'`)).toBe(0);
  });
});

describe('a transaction fn leaves failed (it caught a failed statement without a savepoint, and returned)', () => {
  const swallows = (key: string) => async (tx: Parameters<Parameters<typeof t.db.transaction>[0]>[0]) => {
    const charge = await insertCharge(tx, key, 500);
    await tx.execute(sql`select 1 / 0`).catch(() => {}); // the transaction is now failed
    return charge;
  };

  it.each([
    ['given a database', (key: string) => withIdempotency(t.db, key, swallows(key))],
    ["in the caller's transaction", (key: string) => t.db.transaction((tx) => withIdempotency(tx, key, swallows(key)))],
  ])('gets IDEMPOTENCY_TRANSACTION_ABORTED, not retryable, and nothing of fn or the key is kept, %s', async (_where, call) => {
    const key = `left-failed-${_where.replace(/\W/g, '-')}`;
    const error = await call(key).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_TRANSACTION_ABORTED', retryable: false, message: expect.stringMatching(/fn/) });
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', 'key = $1', [key])).toBe(0);
  });
});

describe('a statement_timeout shorter than the wait', () => {
  it('ends the wait with IDEMPOTENCY_IN_FLIGHT, retryable', async () => {
    const held = await holdKey('short-statement-timeout');
    const error = await t.db
      .transaction(async (tx) => {
        await tx.execute(sql`set local statement_timeout = '200ms'`);
        return withIdempotency(tx, 'short-statement-timeout', async () => 'second', { waitTimeout: '30s' });
      })
      .catch((e: unknown) => e);
    held.release();
    await held.done;
    expect(codeOf(error)).toBe('IDEMPOTENCY_IN_FLIGHT');
    expect((error as IdempotencyError).retryable).toBe(true);
  });
});

describe('two transactions claiming the same keys in opposite order', () => {
  it('fail one of them with IDEMPOTENCY_DEADLOCK, retryable, and the other completes', async () => {
    const aHasFirst = deferred();
    const bHasFirst = deferred();
    const a = t.db.transaction(async (tx) => {
      await withIdempotency(tx, 'dl-1', async () => 'a1');
      aHasFirst.resolve();
      await bHasFirst.promise;
      return withIdempotency(tx, 'dl-2', async () => 'a2');
    });
    const b = t.db.transaction(async (tx) => {
      await withIdempotency(tx, 'dl-2', async () => 'b2');
      bHasFirst.resolve();
      await aHasFirst.promise;
      return withIdempotency(tx, 'dl-1', async () => 'b1');
    });
    const results = await Promise.allSettled([a, b]);
    const failed = results.filter((r) => r.status === 'rejected');
    expect(failed).toHaveLength(1);
    const error = (failed[0] as PromiseRejectedResult).reason as IdempotencyError;
    expect(error.code).toBe('IDEMPOTENCY_DEADLOCK');
    expect(error.retryable).toBe(true);
    expect(await count(t.pool, 'idempotency_keys', `key in ('dl-1', 'dl-2') and status = 'completed'`)).toBe(2);
  });
});

describe('errors and logs', () => {
  const secretResult = { card: '4242-SECRET-CARD' };
  const fingerprint = { iban: 'SECRET-IBAN' };
  const hash = fingerprintOf(fingerprint)!;
  const everything = (error: unknown) => `${inspect(error, { depth: Infinity, showHidden: true })} ${JSON.stringify(error)}`;

  it('carry neither the stored response nor the fingerprint when storing fails', async () => {
    await t.pool.query(`alter table idempotency_keys add constraint short_responses check (response is null or length(response::text) < 20)`);
    try {
      const error = await withIdempotency(t.db, 'leaky-store', async (tx) => {
        await insertCharge(tx, 'leaky-store', 1);
        return secretResult;
      }, { fingerprint }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Error);
      expect(everything(error)).not.toContain('SECRET');
      expect(everything(error)).not.toContain(hash);
      expect(await count(t.pool, 'charges', `ref = 'leaky-store'`)).toBe(0);
    } finally {
      await t.pool.query(`alter table idempotency_keys drop constraint short_responses`);
    }
  });

  it('carry no fingerprint when a duplicate is rejected in flight', async () => {
    const held = await holdKey('leaky-reject');
    const error = await t.db
      .transaction((tx) => withIdempotency(tx, 'leaky-reject', async () => 'y', { onInFlight: 'reject', fingerprint }))
      .catch((e: unknown) => e);
    held.release();
    await held.done;
    expect(codeOf(error)).toBe('IDEMPOTENCY_IN_FLIGHT');
    expect(everything(error)).not.toContain(hash);
  });

  it('carry no fingerprint when a claim waits in vain', async () => {
    const held = await holdKey('leaky-wait');
    const error = await t.db
      .transaction((tx) => withIdempotencyOutcome(tx, 'leaky-wait', async () => 'x', { waitTimeout: '100ms', fingerprint }))
      .catch((e: unknown) => e);
    held.release();
    await held.done;
    expect(codeOf(error)).toBe('IDEMPOTENCY_IN_FLIGHT');
    expect(everything(error)).not.toContain(hash);
  });
});

describe('a reject claim on a dead key that a sweep batch holds', () => {
  it('waits for the batch and then runs fn, instead of answering in flight', async () => {
    await t.pool.query(`insert into idempotency_keys (scope, key, status, response, expires_at)
                        values ('', 'swept-now', 'completed', '{"value":"old"}', now() - interval '1 second')`);
    const sweeper = await t.pool.connect();
    await sweeper.query('begin');
    await sweeper.query(`delete from idempotency_keys where key = 'swept-now'`);
    const claim = withIdempotencyOutcome(t.db, 'swept-now', async () => 'new', { onInFlight: 'reject' });
    await waitForLockWaiters(t.pool, 1);
    await sweeper.query('commit');
    sweeper.release();
    expect(await claim).toEqual({ value: 'new', replayed: false });
  });

  it('still rejects at once a live key in flight', async () => {
    const held = await holdKey('live-reject');
    const error = await t.db
      .transaction((tx) => withIdempotency(tx, 'live-reject', async () => 'x', { onInFlight: 'reject' }))
      .catch((e: unknown) => e);
    expect(codeOf(error)).toBe('IDEMPOTENCY_IN_FLIGHT');
    held.release();
    await held.done;
  });
});

describe('a serialization failure while storing the result', () => {
  // SERIALIZABLE fails overlapping transactions where it must; a trigger that
  // raises 40001 on the first store makes the moment deterministic (a
  // sequence, because the failed transaction rolls back any table write).
  async function failFirstStore() {
    await t.pool.query(`
      drop sequence if exists store_attempts;
      create sequence store_attempts;
      create or replace function fail_first_store() returns trigger language plpgsql as $$
      begin
        if new.status = 'completed' and nextval('store_attempts') = 1 then
          raise exception 'could not serialize access' using errcode = '40001';
        end if;
        return new;
      end $$;
      drop trigger if exists fail_first_store on idempotency_keys;
      create trigger fail_first_store before update on idempotency_keys for each row execute function fail_first_store();`);
  }
  const dropTrigger = () => t.pool.query(`drop trigger if exists fail_first_store on idempotency_keys`);

  it('is retried in the transaction the library opened: fn runs again, once committed', async () => {
    await failFirstStore();
    try {
      let calls = 0;
      const outcome = await withIdempotencyOutcome(t.db, 'store-40001', async (tx) => {
        calls++;
        return insertCharge(tx, 'store-40001', 1);
      });
      expect(outcome.replayed).toBe(false);
      expect(calls).toBe(2);
      expect(await count(t.pool, 'charges', `ref = 'store-40001'`)).toBe(1);
    } finally {
      await dropTrigger();
    }
  });

  it("is IDEMPOTENCY_SERIALIZATION_FAILURE, retryable, in the caller's transaction", async () => {
    await failFirstStore();
    try {
      const error = await t.db.transaction((tx) => withIdempotency(tx, 'store-40001-caller', async () => 1)).catch((e: unknown) => e);
      expect(codeOf(error)).toBe('IDEMPOTENCY_SERIALIZATION_FAILURE');
      expect((error as IdempotencyError).retryable).toBe(true);
    } finally {
      await dropTrigger();
    }
  });
});

describe("node-postgres' query_timeout shorter than the wait", () => {
  it('ends the wait with IDEMPOTENCY_IN_FLIGHT, retryable', async () => {
    const held = await holdKey('client-timeout');
    const { drizzle } = await import('drizzle-orm/node-postgres');
    const impatient = drizzle({ client: t.newPool(2, { query_timeout: 300 }) });
    const error = await withIdempotency(impatient, 'client-timeout', async () => 'second', { waitTimeout: '30s' }).catch((e: unknown) => e);
    held.release();
    await held.done;
    expect(codeOf(error)).toBe('IDEMPOTENCY_IN_FLIGHT');
    expect((error as IdempotencyError).retryable).toBe(true);
  });
});
