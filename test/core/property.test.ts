import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../../src/index.js';
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
