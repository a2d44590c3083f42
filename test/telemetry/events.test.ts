import { sql } from 'drizzle-orm';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import {
  IDEMPOTENCY_CHANNELS,
  IdempotencyInFlightError,
  IdempotencyKeyReusedError,
  IdempotencyResultInvalidError,
  IdempotencySerializationError,
  sweepExpiredKeys,
  telemetryHash,
  withIdempotency,
  withIdempotencyOutcome,
} from '../../src/index.js';
import { startTrace } from '../../src/telemetry/publish.js';
import { waitForLockWaiters, waitForWaitingCalls } from '../support/activity.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge } from '../support/fixtures.js';
import { recordEvents } from '../support/telemetry.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

// Distinctive values: no payload may contain them.
const scope = 'scope-alice@example.com';
const charges = (key: string) => count(t.pool, 'charges', 'ref = $1', [key]);
const keyRowsOf = (key: string) => count(t.pool, 'idempotency_keys', 'scope = $1 and key = $2', [scope, key]);

class PaymentDeclined extends Error {
  override name = 'PaymentDeclined';
}

describe('the events of one call', () => {
  it('first execution: claimed, then stored, then the call, executed', async () => {
    const events = recordEvents();
    const value = await withIdempotency(t.db, 'first-secret-key', (tx) => insertCharge(tx, 'first-secret-key', 500), { scope });
    expect(events.names(scope, 'first-secret-key')).toEqual(['claimed', 'stored', 'call']);
    const [claimed, stored, call] = events.of(scope, 'first-secret-key').map((e) => e.message);
    const ref = { scopeHash: telemetryHash(scope), keyHash: telemetryHash('first-secret-key'), transaction: 'own', callId: expect.any(Number) };
    expect(claimed).toEqual({ ...ref, waitMs: expect.any(Number) });
    expect(new Set([claimed!.callId, stored!.callId, call!.callId]).size).toBe(1);
    expect(stored).toEqual({ ...ref, bytes: Buffer.byteLength(JSON.stringify({ value })), durationMs: expect.any(Number) });
    expect(call).toEqual({
      ...ref,
      outcome: 'executed',
      policy: 'wait',
      startTime: expect.any(Number),
      durationMs: expect.any(Number),
      waitMs: claimed!.waitMs,
      waited: false,
    });
    expect(call!.waitMs as number).toBeLessThanOrEqual(call!.durationMs as number);
    expect(Math.abs((call!.startTime as number) - Date.now())).toBeLessThan(60_000); // epoch milliseconds, not process time
    expect(await charges('first-secret-key')).toBe(1);
  });

  it('carries hashes of the key and scope, never the raw values', async () => {
    const events = recordEvents();
    await withIdempotency(t.db, 'raw-secret-key', async () => 'ok', { scope });
    await withIdempotency(t.db, 'raw-secret-key', async () => 'ok', { scope });
    await expect(withIdempotency(t.db, 'raw-secret-key', async () => 'ok', { scope, fingerprint: 'other' })).rejects.toThrow();
    expect(events.all.length).toBeGreaterThanOrEqual(7);
    const published = JSON.stringify(events.all);
    expect(published).not.toContain('raw-secret-key');
    expect(published).not.toContain('alice');
    expect(telemetryHash('raw-secret-key')).toMatch(/^[0-9a-f]{16}$/);
  });

  it('replay: replayed and the call, in the own transaction and in the caller’s', async () => {
    await withIdempotency(t.db, 'replay-key', (tx) => insertCharge(tx, 'replay-key', 1), { scope });
    const events = recordEvents();
    expect(await withIdempotencyOutcome(t.db, 'replay-key', (tx) => insertCharge(tx, 'replay-key', 1), { scope })).toMatchObject({ replayed: true });
    await t.db.transaction((tx) => withIdempotency(tx, 'replay-key', (tx) => insertCharge(tx, 'replay-key', 1), { scope }));
    expect(events.names(scope, 'replay-key')).toEqual(['replayed', 'call', 'replayed', 'call']);
    const [own, , caller, call] = events.of(scope, 'replay-key').map((e) => e.message);
    expect(own).toMatchObject({ transaction: 'own', waited: false });
    expect(caller).toMatchObject({ transaction: 'caller', waited: false });
    expect(call).toMatchObject({ outcome: 'replayed', transaction: 'caller', waited: false });
    expect(await charges('replay-key')).toBe(1);
  });

  it('replay found by lookupFirst: the same events, without a claim', async () => {
    await withIdempotency(t.db, 'lookup-key', async () => 'done', { scope });
    const events = recordEvents();
    await withIdempotency(t.db, 'lookup-key', async () => 'again', { scope, lookupFirst: true });
    expect(events.names(scope, 'lookup-key')).toEqual(['replayed', 'call']);
  });

  it('a concurrent duplicate in this process waits in its queue, then replays', async () => {
    const events = recordEvents();
    const gate = deferred();
    const first = withIdempotency(t.db, 'queue-key', async (tx) => {
      await gate.promise;
      return insertCharge(tx, 'queue-key', 5);
    }, { scope });
    const second = withIdempotencyOutcome(t.db, 'queue-key', (tx) => insertCharge(tx, 'queue-key', 5), { scope });
    await waitForWaitingCalls(1);
    gate.resolve();
    const [value, duplicate] = await Promise.all([first, second]);
    expect(duplicate).toEqual({ value, replayed: true });
    expect(events.byCall(scope, 'queue-key')).toEqual([
      ['claimed', 'stored', 'call'],
      ['in-flight', 'replayed', 'call'],
    ]);
    const published = events.of(scope, 'queue-key');
    const of = (event: string) => published.filter((e) => e.event === event).map((e) => e.message);
    expect(of('in-flight')).toEqual([expect.objectContaining({ action: 'waited', policy: 'wait', where: 'process', waitMs: expect.any(Number) })]);
    expect(of('replayed')).toEqual([expect.objectContaining({ waited: true })]);
    expect(of('call')).toEqual([expect.objectContaining({ outcome: 'executed', waited: false }), expect.objectContaining({ outcome: 'replayed', waited: true })]);
    expect(await charges('queue-key')).toBe(1);
    expect(await keyRowsOf('queue-key')).toBe(1);
  });

  it('a concurrent duplicate in another transaction waits on the key’s row lock, then replays', async () => {
    const events = recordEvents();
    const gate = deferred();
    const first = t.db.transaction((tx) =>
      withIdempotency(tx, 'lock-key', async (tx) => {
        await gate.promise;
        return insertCharge(tx, 'lock-key', 5);
      }, { scope }),
    );
    // Wait until the first holds the key, so the duplicate finds it in flight.
    while (!events.names(scope, 'lock-key').includes('claimed')) await new Promise((r) => setTimeout(r, 5));
    const second = t.db.transaction((tx) => withIdempotencyOutcome(tx, 'lock-key', (tx) => insertCharge(tx, 'lock-key', 5), { scope }));
    await waitForLockWaiters(t.pool, 1);
    gate.resolve();
    const [value, duplicate] = await Promise.all([first, second]);
    expect(duplicate).toEqual({ value, replayed: true });
    expect(events.byCall(scope, 'lock-key')).toEqual([
      ['claimed', 'stored', 'call'],
      ['in-flight', 'replayed', 'call'],
    ]);
    const published = events.of(scope, 'lock-key');
    expect(published.find((e) => e.event === 'in-flight')!.message).toMatchObject({ action: 'waited', where: 'database', transaction: 'caller' });
    expect(published.find((e) => e.event === 'replayed')!.message).toMatchObject({ waited: true });
    expect(await charges('lock-key')).toBe(1);
    expect(await keyRowsOf('lock-key')).toBe(1);
  });

  it('a duplicate that waited in this process for a first call that rolled back: waited, then claims and runs', async () => {
    const events = recordEvents();
    const gate = deferred();
    const first = withIdempotency(t.db, 'queue-rollback-key', async (tx) => {
      await insertCharge(tx, 'queue-rollback-key', 5);
      await gate.promise;
      throw new PaymentDeclined('declined');
    }, { scope });
    const second = withIdempotencyOutcome(t.db, 'queue-rollback-key', (tx) => insertCharge(tx, 'queue-rollback-key', 5), { scope });
    await waitForWaitingCalls(1);
    gate.resolve();
    await expect(first).rejects.toBeInstanceOf(PaymentDeclined);
    expect(await second).toMatchObject({ replayed: false });
    expect(events.byCall(scope, 'queue-rollback-key')).toEqual([
      ['claimed', 'rolled-back', 'call'],
      ['in-flight', 'claimed', 'stored', 'call'],
    ]);
    expect(events.of(scope, 'queue-rollback-key').find((e) => e.event === 'in-flight')!.message).toMatchObject({ action: 'waited', where: 'process' });
    expect(await charges('queue-rollback-key')).toBe(1);
  });

  it('a duplicate that waited on the row lock for a first call that rolled back: claimed, the wait in its waitMs only', async () => {
    const events = recordEvents();
    const gate = deferred();
    const first = t.db.transaction((tx) =>
      withIdempotency(tx, 'lock-rollback-key', async (tx) => {
        await insertCharge(tx, 'lock-rollback-key', 5);
        await gate.promise;
        throw new PaymentDeclined('declined');
      }, { scope }),
    );
    while (!events.names(scope, 'lock-rollback-key').includes('claimed')) await new Promise((r) => setTimeout(r, 5));
    const second = t.db.transaction((tx) => withIdempotencyOutcome(tx, 'lock-rollback-key', (tx) => insertCharge(tx, 'lock-rollback-key', 5), { scope }));
    await waitForLockWaiters(t.pool, 1);
    gate.resolve();
    await expect(first).rejects.toBeInstanceOf(PaymentDeclined);
    expect(await second).toMatchObject({ replayed: false });
    expect(events.byCall(scope, 'lock-rollback-key')).toEqual([
      ['claimed', 'rolled-back', 'call'],
      ['claimed', 'stored', 'call'],
    ]);
    expect(await charges('lock-rollback-key')).toBe(1);
  });

  it('under REPEATABLE READ, a duplicate that waited on the row lock fails to serialize; its retry replays, not told as waited', async () => {
    const events = recordEvents();
    const gate = deferred();
    const rr = { isolationLevel: 'repeatable read' } as const;
    const first = t.db.transaction(
      (tx) =>
        withIdempotency(tx, 'rr-key', async (tx) => {
          await gate.promise;
          return insertCharge(tx, 'rr-key', 5);
        }, { scope }),
      rr,
    );
    while (!events.names(scope, 'rr-key').includes('claimed')) await new Promise((r) => setTimeout(r, 5));
    const duplicate = () => t.db.transaction((tx) => withIdempotencyOutcome(tx, 'rr-key', (tx) => insertCharge(tx, 'rr-key', 5), { scope }), rr);
    const second = duplicate();
    // Its expectation is attached now: the duplicate may fail before the first's COMMIT answer arrives.
    const secondFails = expect(second).rejects.toBeInstanceOf(IdempotencySerializationError);
    await waitForLockWaiters(t.pool, 1);
    gate.resolve();
    await first;
    await secondFails;
    expect(await duplicate()).toMatchObject({ replayed: true });
    expect(events.byCall(scope, 'rr-key')).toEqual([['claimed', 'stored', 'call'], ['call'], ['replayed', 'call']]);
    const calls = events.of(scope, 'rr-key').filter((e) => e.event === 'call').map((e) => e.message);
    expect(calls).toContainEqual(expect.objectContaining({ outcome: 'failed', error: 'IDEMPOTENCY_SERIALIZATION_FAILURE', waited: false }));
    expect(events.of(scope, 'rr-key').find((e) => e.event === 'replayed')!.message).toMatchObject({ waited: false });
    expect(await charges('rr-key')).toBe(1);
  });

  it("'reject': a duplicate of a key in flight is rejected, in this process and in the database", async () => {
    const events = recordEvents();
    const gate = deferred();
    const first = withIdempotency(t.db, 'reject-key', async (tx) => {
      await gate.promise;
      return insertCharge(tx, 'reject-key', 5);
    }, { scope });
    while (!events.names(scope, 'reject-key').includes('claimed')) await new Promise((r) => setTimeout(r, 5));
    const reject = { scope, onInFlight: 'reject' } as const;
    await expect(withIdempotency(t.db, 'reject-key', async () => 1, reject)).rejects.toBeInstanceOf(IdempotencyInFlightError);
    await expect(t.db.transaction((tx) => withIdempotency(tx, 'reject-key', async () => 1, reject))).rejects.toBeInstanceOf(IdempotencyInFlightError);
    gate.resolve();
    await first;
    const published = events.of(scope, 'reject-key');
    expect(published.map((e) => e.event)).toEqual(['claimed', 'in-flight', 'call', 'in-flight', 'call', 'stored', 'call']);
    for (const i of [1, 3]) expect(published[i]!.message).toMatchObject({ action: 'rejected', policy: 'reject' });
    expect(published[1]!.message.transaction).toBe('own');
    expect(published[3]!.message.transaction).toBe('caller');
    expect(published[2]!.message).toMatchObject({ outcome: 'in-flight', error: 'IDEMPOTENCY_IN_FLIGHT', policy: 'reject' });
    expect(await charges('reject-key')).toBe(1);
  });

  it('key reused with another fingerprint: key-reused and the call, nothing claimed', async () => {
    await withIdempotency(t.db, 'reused-key', (tx) => insertCharge(tx, 'reused-key', 100), { scope, fingerprint: { amount: 100 } });
    const events = recordEvents();
    const other = (tx: Parameters<typeof insertCharge>[0]) => insertCharge(tx, 'reused-key', 999);
    await expect(withIdempotency(t.db, 'reused-key', other, { scope, fingerprint: { amount: 999 } })).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    const published = events.of(scope, 'reused-key');
    expect(published.map((e) => e.event)).toEqual(['key-reused', 'call']);
    expect(published[1]!.message).toMatchObject({ outcome: 'key-reused', error: 'IDEMPOTENCY_KEY_REUSED' });
    expect(await charges('reused-key')).toBe(1);
  });

  it('fn throws: claimed, then rolled back with the error’s name and not its message; nothing remains', async () => {
    const events = recordEvents();
    const declined = async (tx: Parameters<typeof insertCharge>[0]) => {
      await insertCharge(tx, 'throw-key', 5);
      throw new PaymentDeclined('card 4242 declined for alice');
    };
    await expect(withIdempotency(t.db, 'throw-key', declined, { scope })).rejects.toBeInstanceOf(PaymentDeclined);
    await expect(t.db.transaction((tx) => withIdempotency(tx, 'throw-key', declined, { scope }))).rejects.toBeInstanceOf(PaymentDeclined);
    const published = events.of(scope, 'throw-key');
    expect(published.map((e) => e.event)).toEqual(['claimed', 'rolled-back', 'call', 'claimed', 'rolled-back', 'call']);
    expect(published[1]!.message).toMatchObject({ phase: 'fn', error: 'PaymentDeclined', transaction: 'own' });
    expect(published[4]!.message).toMatchObject({ phase: 'fn', error: 'PaymentDeclined', transaction: 'caller' });
    expect(published[2]!.message).toMatchObject({ outcome: 'rolled-back', error: 'PaymentDeclined' });
    expect(JSON.stringify(published)).not.toContain('4242');
    expect(await charges('throw-key')).toBe(0);
    expect(await keyRowsOf('throw-key')).toBe(0);
  });

  it('a result that cannot be stored: rolled back in the store phase', async () => {
    const events = recordEvents();
    await expect(withIdempotency(t.db, 'bigint-key', async () => ({ amount: 1n }), { scope })).rejects.toBeInstanceOf(IdempotencyResultInvalidError);
    const published = events.of(scope, 'bigint-key');
    expect(published.map((e) => e.event)).toEqual(['claimed', 'rolled-back', 'call']);
    expect(published[1]!.message).toMatchObject({ phase: 'store', error: 'IDEMPOTENCY_RESULT_INVALID' });
    expect(await keyRowsOf('bigint-key')).toBe(0);
  });

  it('an expired key is reclaimed (not claimed) and runs again; so is a leased row whose lease ran out', async () => {
    await withIdempotency(t.db, 'expired-key', (tx) => insertCharge(tx, 'expired-key', 5), { scope });
    await t.pool.query(`update idempotency_keys set expires_at = now() - interval '1 second' where key = 'expired-key'`);
    await t.pool.query(
      `insert into idempotency_keys (scope, key, status, expires_at, locked_until) values ($1, 'lease-key', 'started', now() + interval '1 hour', now() - interval '1 second')`,
      [scope],
    );
    const events = recordEvents();
    await withIdempotency(t.db, 'expired-key', (tx) => insertCharge(tx, 'expired-key', 5), { scope });
    await withIdempotency(t.db, 'lease-key', (tx) => insertCharge(tx, 'lease-key', 5), { scope });
    expect(events.names(scope, 'expired-key')).toEqual(['reclaimed', 'stored', 'call']);
    expect(events.of(scope, 'expired-key')[0]!.message).toMatchObject({ previousStatus: 'completed', waitMs: expect.any(Number) });
    expect(events.names(scope, 'lease-key')).toEqual(['reclaimed', 'stored', 'call']);
    expect(events.of(scope, 'lease-key')[0]!.message).toMatchObject({ previousStatus: 'started' });
    expect(await charges('expired-key')).toBe(2); // once per life of the key
    expect(await keyRowsOf('expired-key')).toBe(1);
  });
});

describe('the sweep', () => {
  it('publishes one swept event per sweep, with what it deleted', async () => {
    await t.pool.query(`insert into idempotency_keys (scope, key, status, expires_at)
      select 'sweep', 'k' || i, 'completed', now() - interval '1 minute' from generate_series(1, 25) as i`);
    const swept: unknown[] = [];
    const listener = (message: unknown) => swept.push(message);
    subscribe(IDEMPOTENCY_CHANNELS.swept, listener);
    try {
      await sweepExpiredKeys(t.db, { batchSize: 10 });
      await sweepExpiredKeys(t.db);
    } finally {
      unsubscribe(IDEMPOTENCY_CHANNELS.swept, listener);
    }
    expect(swept).toEqual([
      { deleted: 25, batches: 3, durationMs: expect.any(Number), stoppedBy: 'drained' },
      { deleted: 0, batches: 1, durationMs: expect.any(Number), stoppedBy: 'drained' },
    ]);
    expect(await count(t.pool, 'idempotency_keys', `scope = 'sweep'`)).toBe(0);
  });
});

describe('nobody listening', () => {
  it('builds no trace: a call that starts unobserved publishes nothing, even to a listener that joins while it runs', async () => {
    expect(startTrace(scope, 'k', 'wait', 'own')).toBeUndefined();
    let events: ReturnType<typeof recordEvents> | undefined;
    await withIdempotency(t.db, 'quiet-key', async (tx) => {
      events = recordEvents();
      return insertCharge(tx, 'quiet-key', 1);
    }, { scope });
    expect(events!.all).toEqual([]);
    // The next call starts observed.
    await withIdempotency(t.db, 'quiet-key', async () => 0, { scope });
    expect(events!.names(scope, 'quiet-key')).toEqual(['replayed', 'call']);
    await t.db.execute(sql`select 1`);
  });

  it('starts a trace for a call once any of its channels has a listener', () => {
    const listener = () => {};
    subscribe(IDEMPOTENCY_CHANNELS.keyReused, listener);
    try {
      expect(startTrace(scope, 'k', 'wait', 'own')).toMatchObject({ ref: { keyHash: telemetryHash('k') } });
    } finally {
      unsubscribe(IDEMPOTENCY_CHANNELS.keyReused, listener);
    }
    expect(startTrace(scope, 'k', 'wait', 'own')).toBeUndefined();
  });
});
