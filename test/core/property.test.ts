import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdempotencyError, withIdempotencyOutcome } from '../../src/index.js';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { testDatabase } from '../support/db.js';
import { createBusinessTables, insertCharge, sleep } from '../support/fixtures.js';

const t = await testDatabase({ max: 40 });
await createBusinessTables(t.pool);

type Ending = 'commit' | 'fn-throws' | 'caller-catches-and-commits' | 'caller-rolls-back';
interface Call {
  key: number;
  ending: Ending;
  ownTransaction: boolean;
  startDelay: number;
  holdMs: number;
}

const call = fc.record<Call>({
  key: fc.integer({ min: 0, max: 3 }),
  ending: fc.constantFrom<Ending>('commit', 'fn-throws', 'caller-catches-and-commits', 'caller-rolls-back'),
  ownTransaction: fc.boolean(),
  startDelay: fc.integer({ min: 0, max: 8 }),
  holdMs: fc.integer({ min: 0, max: 8 }),
});

let run = 0;

/** Plays one call; resolves with the value the caller saw committed, or undefined. */
async function play(prefix: string, c: Call): Promise<{ key: string; value: unknown } | undefined> {
  await sleep(c.startDelay);
  const key = `${prefix}-${c.key}`;
  const fn = async (tx: IdempotencyDatabase) => {
    const charge = await insertCharge(tx, key, 1);
    await sleep(c.holdMs);
    if (c.ending === 'fn-throws' || c.ending === 'caller-catches-and-commits') throw new Error('fn fails');
    return charge;
  };
  if (!c.ownTransaction && (c.ending === 'commit' || c.ending === 'fn-throws')) {
    const outcome = await withIdempotencyOutcome(t.db, key, fn).catch(() => undefined);
    return outcome && { key, value: outcome.value };
  }
  let seen: unknown;
  const committed = await t.db
    .transaction(async (tx) => {
      await insertCharge(tx, `${key}-caller`, 1); // the caller's own write around ours
      try {
        seen = (await withIdempotencyOutcome(tx, key, fn)).value;
      } catch (error) {
        if (c.ending !== 'caller-catches-and-commits') throw error;
        seen = undefined;
      }
      if (c.ending === 'caller-rolls-back') throw new Error('caller rolls back');
    })
    .then(
      () => true,
      () => false,
    );
  return committed && seen !== undefined ? { key, value: seen } : undefined;
}

describe('random interleavings of callers, keys, throws and rollbacks', () => {
  it('keep one effect per completed key, no effect without its key, and no row left started', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(call, { minLength: 2, maxLength: 16 }), async (calls) => {
        const prefix = `run${run++}`;
        const results = (await Promise.all(calls.map((c) => play(prefix, c)))).filter((r) => r !== undefined);

        const { rows: keys } = await t.pool.query<{ key: string; status: string; response: { value: { id: number } } }>(
          `select key, status, response from idempotency_keys where key like $1`,
          [`${prefix}-%`],
        );
        const { rows: charges } = await t.pool.query<{ id: number; ref: string }>(
          `select id, ref from charges where ref like $1 and ref not like '%-caller'`,
          [`${prefix}-%`],
        );
        expect(keys.every((k) => k.status === 'completed')).toBe(true);
        // Exactly one effect per completed key, and it is the stored one.
        expect(charges.map((c) => c.ref).sort()).toEqual(keys.map((k) => k.key).sort());
        for (const k of keys) expect(charges.find((c) => c.ref === k.key)!.id).toBe(k.response.value.id);
        // Every caller whose transaction committed saw the stored answer.
        for (const r of results) expect(r.value).toEqual(keys.find((k) => k.key === r.key)!.response.value);
      }),
      { numRuns: 30 },
    );
  });
});

// Batches: several calls in one transaction (a consumer handling a batch with
// redelivered duplicates), calls nested in another call's fn, two scopes and
// two fingerprints per key, each caller checked against what was stored.
interface BatchCall {
  key: number;
  scope: number;
  fingerprint: number;
  throws: boolean;
  nested: number | null;
}
interface Batch {
  shared: boolean;
  rollsBack: boolean;
  startDelay: number;
  calls: BatchCall[];
}

const batchCall = fc.record<BatchCall>({
  key: fc.integer({ min: 0, max: 2 }),
  scope: fc.integer({ min: 0, max: 1 }),
  fingerprint: fc.integer({ min: 0, max: 1 }),
  throws: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  nested: fc.option(fc.integer({ min: 0, max: 2 }), { freq: 3 }),
});
const batch = fc.record<Batch>({
  shared: fc.boolean(),
  rollsBack: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  startDelay: fc.integer({ min: 0, max: 6 }),
  calls: fc.array(batchCall, { minLength: 1, maxLength: 5 }),
});

const SCOPES = ['', 'tenant-b'];
interface Seen {
  scope: string;
  key: string;
  fingerprint: string;
  value: unknown;
}

describe('random batches of same-key calls within and across transactions', () => {
  it('run each key once per scope, and give every caller only its own answer', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(batch, { minLength: 1, maxLength: 6 }), async (batches) => {
        const prefix = `batch${run++}`;
        const seen: Seen[] = [];
        const unexpected: unknown[] = [];
        const keyOf = (n: number) => `${prefix}-${n}`;

        const call = (db: IdempotencyDatabase, c: BatchCall, record: (s: Seen) => void) => {
          const scope = SCOPES[c.scope]!;
          const key = keyOf(c.key);
          const fingerprint = `fp-${c.fingerprint}`;
          // What nested calls saw commits only if this call's fn commits.
          const inner: Seen[] = [];
          return withIdempotencyOutcome(
            db,
            key,
            async (tx) => {
              const charge = await insertCharge(tx, `${scope}|${key}`, 1);
              if (c.nested !== null) await call(tx, { ...c, key: c.nested, nested: null, throws: false }, (s) => inner.push(s));
              await sleep(1);
              if (c.throws) throw new Error('fn fails');
              return charge;
            },
            { scope, fingerprint },
          ).then(
            (outcome) => {
              if (!outcome.replayed) inner.forEach(record);
              record({ scope, key, fingerprint, value: outcome.value });
              return outcome;
            },
            (error: unknown) => {
              const expected =
                (error instanceof Error && ['fn fails', 'caller rolls back'].includes(error.message)) ||
                (error instanceof IdempotencyError &&
                  ['IDEMPOTENCY_KEY_REUSED', 'IDEMPOTENCY_REENTRANT_CALL', 'IDEMPOTENCY_IN_FLIGHT', 'IDEMPOTENCY_SERIALIZATION_FAILURE', 'IDEMPOTENCY_DEADLOCK'].includes(error.code));
              if (!expected) unexpected.push(error);
              throw error;
            },
          );
        };

        await Promise.all(
          batches.map(async (b) => {
            await sleep(b.startDelay);
            if (!b.shared) {
              await Promise.allSettled(b.calls.map((c) => call(t.db, c, (s) => seen.push(s))));
              return;
            }
            const pending: Seen[] = [];
            await t.db
              .transaction(async (tx) => {
                await Promise.allSettled(b.calls.map((c) => call(tx, c, (s) => pending.push(s))));
                if (b.rollsBack) throw new Error('caller rolls back');
              })
              .then(
                () => seen.push(...pending),
                () => {},
              );
          }),
        );

        expect(unexpected).toEqual([]);
        const { rows: keys } = await t.pool.query<{ scope: string; key: string; status: string; fingerprint: string; response: { value: { id: number } } }>(
          `select scope, key, status, fingerprint, response from idempotency_keys where key like $1`,
          [`${prefix}-%`],
        );
        const { rows: charges } = await t.pool.query<{ id: number; ref: string }>(`select id, ref from charges where ref like $1`, [`%|${prefix}-%`]);
        expect(keys.every((k) => k.status === 'completed')).toBe(true);
        // One effect per (scope, key) that completed, and it is the stored one.
        expect(charges.map((c) => c.ref).sort()).toEqual(keys.map((k) => `${k.scope}|${k.key}`).sort());
        for (const k of keys) expect(charges.find((c) => c.ref === `${k.scope}|${k.key}`)!.id).toBe(k.response.value.id);
        // Every caller that saw a value committed with it got its own scope's
        // answer, stored for its own fingerprint.
        for (const s of seen) {
          const stored = keys.find((k) => k.scope === s.scope && k.key === s.key);
          expect(stored).toBeDefined();
          expect(stored!.fingerprint).toBe(s.fingerprint);
          expect(s.value).toEqual(stored!.response.value);
        }
      }),
      { numRuns: 20 },
    );
  });
});
