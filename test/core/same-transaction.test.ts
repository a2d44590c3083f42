import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import {
  IdempotencyError,
  IdempotencyKeyReusedError,
  withIdempotency,
  withIdempotencyOutcome,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge, keyRows, sleep } from '../support/fixtures.js';

// A batch consumer (SQS, Kafka) that handles a batch in one transaction sees a
// redelivered message twice in the same batch: one key, one transaction.
const t = await testDatabase();
await createBusinessTables(t.pool);

describe('the same key twice in one transaction', () => {
  it('runs fn once when a batch handles a duplicate in parallel, and both get the one answer', async () => {
    let calls = 0;
    const handle = (tx: Parameters<Parameters<typeof t.db.transaction>[0]>[0], ref: string) =>
      withIdempotencyOutcome(tx, ref, async (tx) => {
        calls++;
        const charge = await insertCharge(tx, ref, 100);
        await sleep(5);
        return charge;
      });
    const outcomes = await t.db.transaction((tx) => Promise.all([handle(tx, 'batch-dup'), handle(tx, 'batch-dup')]));
    expect(calls).toBe(1);
    expect(outcomes.map((o) => o.replayed).sort()).toEqual([false, true]);
    expect(outcomes[0]!.value).toEqual(outcomes[1]!.value);
    expect(await count(t.pool, 'charges', 'ref = $1', ['batch-dup'])).toBe(1);
    expect(await count(t.pool, 'idempotency_keys', `key = 'batch-dup' and status = 'completed'`)).toBe(1);
  });

  it('runs every other key of a parallel batch once, and keeps each key with its own answer', async () => {
    const refs = ['b-1', 'b-2', 'b-1', 'b-3', 'b-2', 'b-1'];
    const calls = new Map<string, number>();
    const outcomes = await t.db.transaction((tx) =>
      Promise.all(
        refs.map((ref) =>
          withIdempotency(tx, ref, async (tx) => {
            calls.set(ref, (calls.get(ref) ?? 0) + 1);
            return { ref, charge: await insertCharge(tx, ref, 1) };
          }),
        ),
      ),
    );
    expect(Object.fromEntries(calls)).toEqual({ 'b-1': 1, 'b-2': 1, 'b-3': 1 });
    outcomes.forEach((o, i) => expect(o.ref).toBe(refs[i]));
    for (const ref of ['b-1', 'b-2', 'b-3']) expect(await count(t.pool, 'charges', 'ref = $1', [ref])).toBe(1);
  });

  it('keeps a parallel batch atomic per key when one of its calls throws', async () => {
    const results = await t.db.transaction((tx) =>
      Promise.allSettled([
        withIdempotency(tx, 'p-ok', (tx) => insertCharge(tx, 'p-ok', 1)),
        withIdempotency(tx, 'p-fail', async (tx) => {
          await insertCharge(tx, 'p-fail', 1);
          await sleep(5);
          throw new Error('declined');
        }),
        withIdempotency(tx, 'p-ok-2', (tx) => insertCharge(tx, 'p-ok-2', 1)),
      ]),
    );
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(await count(t.pool, 'charges', 'ref = $1', ['p-fail'])).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'p-fail'`)).toBe(0);
    expect(await count(t.pool, 'charges', `ref in ('p-ok', 'p-ok-2')`)).toBe(2);
    expect(await count(t.pool, 'idempotency_keys', `key in ('p-ok', 'p-ok-2') and status = 'completed'`)).toBe(2);
  });

  it('refuses a nested call with the same key with a typed error, and nothing of it commits', async () => {
    let inner = 0;
    const error = await t.db
      .transaction((tx) =>
        withIdempotency(tx, 'nested-same', async (tx) => {
          await insertCharge(tx, 'nested-same', 1);
          return withIdempotency(tx, 'nested-same', async (tx) => {
            inner++;
            return insertCharge(tx, 'nested-same', 2);
          });
        }),
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyError);
    expect((error as IdempotencyError).code).toBe('IDEMPOTENCY_REENTRANT_CALL');
    expect(inner).toBe(0);
    expect(await count(t.pool, 'charges', 'ref = $1', ['nested-same'])).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'nested-same'`)).toBe(0);
  });

  it('refuses a nested call with the same key on the outer transaction or the database, too', async () => {
    for (const target of ['outer', 'db'] as const) {
      const key = `nested-${target}`;
      const error = await t.db
        .transaction((outer) =>
          withIdempotency(outer, key, async () =>
            withIdempotency(target === 'outer' ? outer : t.db, key, async () => 'inner ran', { waitTimeout: '30s' }),
          ),
        )
        .catch((e: unknown) => e);
      expect((error as IdempotencyError).code).toBe('IDEMPOTENCY_REENTRANT_CALL');
      expect(await count(t.pool, 'idempotency_keys', 'key = $1', [key])).toBe(0);
    }
  });

  it('runs a nested call with another key inside the outer one, each stored once', async () => {
    const result = await t.db.transaction((tx) =>
      withIdempotency(tx, 'outer-k', async (tx) => {
        const inner = await withIdempotency(tx, 'inner-k', (tx) => insertCharge(tx, 'inner-k', 1));
        return { inner, outer: await insertCharge(tx, 'outer-k', 1) };
      }),
    );
    expect(result.inner.amount).toBe(1);
    expect(await count(t.pool, 'idempotency_keys', `key in ('outer-k', 'inner-k') and status = 'completed'`)).toBe(2);
  });

  it('answers a second call in the same transaction with another fingerprint with KEY_REUSED, never the first answer', async () => {
    const error = await t.db
      .transaction(async (tx) => {
        await withIdempotency(tx, 'fp-same-tx', async () => ({ to: 'alice' }), { fingerprint: { to: 'alice' } });
        return withIdempotency(tx, 'fp-same-tx', async () => ({ to: 'mallory' }), { fingerprint: { to: 'mallory' } });
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyKeyReusedError);
  });

  it('never takes over a started row that has no lease, even past its expiry, and the sweep removes it', async () => {
    // Such a row is only ever a claim whose fn still runs in the transaction
    // that sees it, or (committed by a caller that did not await the call) an
    // orphan: neither may run fn a second time.
    await t.pool.query(
      `insert into idempotency_keys (scope, key, status, expires_at) values ('', 'orphan', 'started', now() - interval '1 hour')`,
    );
    let calls = 0;
    const error = await withIdempotency(t.db, 'orphan', async () => ++calls, { onInFlight: 'reject' }).catch((e: unknown) => e);
    expect((error as IdempotencyError).code).toBe('IDEMPOTENCY_IN_FLIGHT');
    expect(calls).toBe(0);
    const { sweepExpiredKeys } = await import('../../src/index.js');
    await sweepExpiredKeys(t.db);
    expect(await withIdempotency(t.db, 'orphan', async () => ++calls)).toBe(1);
  });

  it('takes over a started row whose lease ran out', async () => {
    await t.pool.query(
      `insert into idempotency_keys (scope, key, status, expires_at, locked_until)
       values ('', 'lease-out', 'started', now() + interval '1 hour', now() - interval '1 second')`,
    );
    expect(await withIdempotencyOutcome(t.db, 'lease-out', async () => 'taken over')).toEqual({ value: 'taken over', replayed: false });
  });
});

describe('storing a result', () => {
  it('fails, and commits nothing of fn, when fn replaced its own claim with another request\'s row', async () => {
    const error = await withIdempotency(t.db, 'swapped', async (tx) => {
      await insertCharge(tx, 'swapped', 1);
      // Something inside fn rewrites the key row (a bug, or a nested protocol).
      await tx.execute(sql`update idempotency_keys set fingerprint = 'someone-else', status = 'completed', response = '{"value":"theirs"}' where key = 'swapped'`);
      return 'mine';
    }, { fingerprint: 'mine' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyError);
    expect((error as IdempotencyError).code).toBe('IDEMPOTENCY_CLAIM_LOST');
    expect(await count(t.pool, 'charges', 'ref = $1', ['swapped'])).toBe(0);
    expect((await keyRows(t.pool)).filter((r) => r.key === 'swapped')).toEqual([]);
  });
});

describe('a call on an outer transaction from inside fn', () => {
  it('keeps nothing of a call whose fn throws after a call it made on the caller\'s transaction failed', async () => {
    // drizzle names savepoints by the depth of the transaction object they are
    // made on: a call on the caller's `tx` inside fn must not reuse fn's name.
    await t.db
      .transaction(async (tx) => {
        await withIdempotency(tx, 'sp-outer', async (sp) => {
          await insertCharge(sp, 'sp-outer', 1);
          await withIdempotency(tx, 'sp-inner', async () => {
            throw new Error('inner declined');
          }).catch(() => {});
          await insertCharge(sp, 'sp-outer', 2);
          throw new Error('outer declined');
        }).catch(() => {});
      });
    expect(await count(t.pool, 'charges', 'ref = $1', ['sp-outer'])).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key in ('sp-outer', 'sp-inner')`)).toBe(0);
  });

  it('keeps a successful inner call on the caller\'s transaction with the outer one', async () => {
    await t.db.transaction((tx) =>
      withIdempotency(tx, 'sp-outer-ok', async (sp) => {
        await withIdempotency(tx, 'sp-inner-ok', (t2) => insertCharge(t2, 'sp-inner-ok', 1));
        return insertCharge(sp, 'sp-outer-ok', 1);
      }),
    );
    expect(await count(t.pool, 'idempotency_keys', `key in ('sp-outer-ok', 'sp-inner-ok') and status = 'completed'`)).toBe(2);
  });

  it('keeps nothing of a call in the library\'s own transaction whose fn throws after two levels of calls on its tx', async () => {
    await withIdempotency(t.db, 'own-outer', async (tx) => {
      await withIdempotency(tx, 'own-mid', async (mid) => {
        await insertCharge(mid, 'own-mid', 1);
        await withIdempotency(tx, 'own-inner', async () => {
          throw new Error('inner declined');
        }).catch(() => {});
        throw new Error('mid declined');
      }).catch(() => {});
      return insertCharge(tx, 'own-outer', 1);
    });
    expect(await count(t.pool, 'charges', 'ref = $1', ['own-mid'])).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'own-mid'`)).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'own-outer' and status = 'completed'`)).toBe(1);
  });
});

describe("savepoints fn opens itself", () => {
  it('keep all or nothing when fn recovers from a failed savepoint on the transaction it closed over, then throws', async () => {
    await t.db.transaction(async (tx) => {
      await withIdempotency(tx, 'user-sp', async () => {
        await insertCharge(tx, 'user-sp', 1);
        await tx.transaction(async (sp) => {
          await sp.execute(sql`select 1 / 0`);
        }).catch(() => {});
        throw new Error('declined');
      }).catch(() => {});
    });
    expect(await count(t.pool, 'charges', `ref = 'user-sp'`)).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'user-sp'`)).toBe(0);
  });

  it('keep all or nothing for a nested call whose fn closed over the outer fn\'s transaction', async () => {
    await withIdempotency(t.db, 'closure-outer', async (t1) => {
      await withIdempotency(t1, 'closure-inner', async () => {
        await insertCharge(t1, 'closure-inner', 1);
        await t1.transaction(async (sp) => {
          await sp.execute(sql`select 1 / 0`);
        }).catch(() => {});
        throw new Error('declined');
      }).catch(() => {});
      return 'outer done';
    });
    expect(await count(t.pool, 'charges', `ref = 'closure-inner'`)).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'closure-inner'`)).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'closure-outer' and status = 'completed'`)).toBe(1);
  });
});

describe('work that fn schedules to run later', () => {
  it('is not taken for a call inside fn once that call has finished', async () => {
    const later = deferred<unknown>();
    await withIdempotency(t.db, 'scheduled-from-fn', async (tx) => {
      setTimeout(() => {
        withIdempotencyOutcome(t.db, 'scheduled-from-fn', async () => 'ran again').then(later.resolve, later.resolve);
      }, 50);
      return insertCharge(tx, 'scheduled-from-fn', 1);
    });
    const outcome = (await later.promise) as { replayed?: boolean; code?: string };
    expect(outcome.code).toBeUndefined();
    expect(outcome.replayed).toBe(true);
  });
});
