import { describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { createBusinessTables, insertCharge } from '../support/fixtures.js';
import { recordEvents } from '../support/telemetry.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

describe('telemetry under a storm of duplicates', () => {
  it('tells exactly one execution per key, and every other call as a replay; the database agrees', async () => {
    const events = recordEvents();
    const keys = ['storm-a', 'storm-b', 'storm-c'];
    const scope = 'storm';
    const pay = (tx: Parameters<typeof insertCharge>[0], key: string) => insertCharge(tx, key, 10);
    // Per key: 6 calls that open their own transaction (they queue in this
    // process) and 6 in transactions of their own making (they wait on the row lock).
    const calls = keys.flatMap((key) =>
      Array.from({ length: 12 }, (_, i) =>
        i % 2 === 0
          ? withIdempotencyOutcome(t.db, key, (tx) => pay(tx, key), { scope })
          : t.db.transaction((tx) => withIdempotencyOutcome(tx, key, (tx) => pay(tx, key), { scope })),
      ),
    );
    const outcomes = await Promise.all(calls);
    expect(outcomes.filter((o) => !o.replayed)).toHaveLength(keys.length);

    for (const key of keys) {
      const published = events.of(scope, key);
      const ended = published.filter((e) => e.event === 'call').map((e) => e.message.outcome);
      expect(ended.filter((o) => o === 'executed')).toHaveLength(1);
      expect(ended.filter((o) => o === 'replayed')).toHaveLength(11);
      expect(published.filter((e) => e.event === 'claimed')).toHaveLength(1);
      expect(published.filter((e) => e.event === 'stored')).toHaveLength(1);
      expect(published.filter((e) => e.event === 'replayed')).toHaveLength(11);
      // Every call ends with its call event, and publishes nothing after it.
      for (const call of events.byCall(scope, key)) expect(call.at(-1)).toBe('call');
      expect(events.byCall(scope, key)).toHaveLength(12);
      // A replay that waited said so before it replayed.
      const waited = published.filter((e) => e.event === 'replayed' && e.message.waited).map((e) => e.message.callId);
      const toldWaiting = published.filter((e) => e.event === 'in-flight' && e.message.action === 'waited').map((e) => e.message.callId);
      expect(toldWaiting.sort()).toEqual(waited.sort());
    }
    // The audit: one charge and one completed key per key.
    const { rows } = await t.pool.query<{ ref: string; charges: number; keys: number }>(
      `select c.ref, count(*)::int as charges,
              (select count(*)::int from idempotency_keys k where k.scope = 'storm' and k.key = c.ref and k.status = 'completed') as keys
       from charges c where c.ref like 'storm-%' group by c.ref order by c.ref`,
    );
    expect(rows).toEqual(keys.map((ref) => ({ ref, charges: 1, keys: 1 })));
  });
});
