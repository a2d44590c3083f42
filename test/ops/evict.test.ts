import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  IdempotencyInFlightError,
  IdempotencyKeyInvalidError,
  IdempotencyOptionsInvalidError,
  evictKey,
  inspectKey,
  withIdempotency,
  type EvictKeyOptions,
} from '../../src/index.js';
import { waitForLockWaiters } from '../support/activity.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';
import { holdKey, insertKeyRow } from '../support/held-key.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();

beforeAll(async () => {
  await createBusinessTables(t.pool);
});

beforeEach(async () => {
  await t.pool.query('truncate idempotency_keys, charges');
});

const charge = (key: string, scope = 'tenant-1') =>
  withIdempotency(t.db, key, (tx) => insertCharge(tx, key, 1999), { scope, fingerprint: { amount: 1999 } });

describe('evictKey', () => {
  it('deletes a completed key and says what it removed; the retry then runs fn again', async () => {
    const first = await charge('order-1');
    expect(await charge('order-1')).toEqual(first); // a replay, before

    const removed = await evictKey(t.db, 'order-1', { scope: 'tenant-1' });

    expect(removed).toMatchObject({ scope: 'tenant-1', key: 'order-1', status: 'completed', expired: false, lockedUntil: null });
    expect(removed!.fingerprint).toMatch(/\S/);
    expect(removed!.responseBytes).toBeGreaterThan(0);
    expect(removed!.evictedAt.getTime()).toBeGreaterThanOrEqual(removed!.completedAt!.getTime());
    expect(removed).not.toHaveProperty('response');
    expect(await keyRows(t.pool)).toEqual([]);

    const second = await charge('order-1');
    // Audit: the eviction is what let the effect happen a second time, and the key is back, once.
    expect(second.id).not.toBe(first.id);
    expect(await count(t.pool, 'charges', 'ref = $1', ['order-1'])).toBe(2);
    expect(await keyRows(t.pool)).toMatchObject([{ scope: 'tenant-1', key: 'order-1', status: 'completed' }]);
  });

  it('deletes only the key of the given scope', async () => {
    await charge('order-1', 'tenant-1');
    await charge('order-1', 'tenant-2');

    expect(await evictKey(t.db, 'order-1', { scope: 'tenant-2' })).toMatchObject({ scope: 'tenant-2' });

    expect(await keyRows(t.pool)).toMatchObject([{ scope: 'tenant-1', key: 'order-1' }]);
  });

  it('deletes an expired key', async () => {
    await insertKeyRow(t.pool, { key: 'old', status: 'completed', expired: true, response: { ok: true } });

    expect(await evictKey(t.db, 'old')).toMatchObject({ status: 'completed', expired: true });
    expect(await keyRows(t.pool)).toEqual([]);
  });

  it('resolves to null when there is no such key, and leaves no row behind', async () => {
    await charge('order-1');

    expect(await evictKey(t.db, 'order-2', { scope: 'tenant-1' })).toBeNull();
    expect(await evictKey(t.db, 'order-2', { scope: 'tenant-1', force: true })).toBeNull();
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'order-1' }]);
  });

  it('refuses a key a live transaction has claimed with IDEMPOTENCY_IN_FLIGHT at once; the call then completes, once', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });

    const error = await evictKey(t.db, 'order-1', { scope: 'tenant-1' }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(IdempotencyInFlightError);
    expect((error as Error).message).toMatch(/nothing was removed/);
    await held.release();
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'order-1', status: 'completed' }]);
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  it('refuses an expired key a live call is taking over; the takeover completes', async () => {
    await insertKeyRow(t.pool, { key: 'old', status: 'completed', expired: true, response: { ok: true } });
    const held = await holdKey(t.db, 'old');

    await expect(evictKey(t.db, 'old')).rejects.toBeInstanceOf(IdempotencyInFlightError);

    await held.release();
    expect(await inspectKey(t.db, 'old')).toMatchObject({ status: 'completed', expired: false });
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  it('refuses a committed started row unless forced; forced, it deletes it and the next call runs fn', async () => {
    await insertKeyRow(t.pool, { key: 'stuck', scope: 'tenant-1', status: 'started' });
    const call = () => withIdempotency(t.db, 'stuck', (tx) => insertCharge(tx, 'stuck', 1999), { scope: 'tenant-1', onInFlight: 'reject' });
    // What a call meets while the row is there.
    await expect(call()).rejects.toBeInstanceOf(IdempotencyInFlightError);

    await expect(evictKey(t.db, 'stuck', { scope: 'tenant-1' })).rejects.toBeInstanceOf(IdempotencyInFlightError);
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'stuck', status: 'started' }]);

    expect(await evictKey(t.db, 'stuck', { scope: 'tenant-1', force: true })).toMatchObject({ status: 'started', completedAt: null });

    await call();
    expect(await count(t.pool, 'charges', 'ref = $1', ['stuck'])).toBe(1);
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'stuck', status: 'completed' }]);
  });

  it('forced against a live transaction that keeps the key, waits at most waitTimeout, then fails and removes nothing', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });

    const error = await evictKey(t.db, 'order-1', { scope: 'tenant-1', force: true, waitTimeout: '200ms' }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(IdempotencyInFlightError);
    expect((error as Error).message).toMatch(/still held by a live transaction after waiting 200 ms/);
    await held.release();
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'order-1', status: 'completed' }]);
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  it('forced against a live transaction that commits while it waits, removes what that transaction committed', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });
    const evicting = evictKey(t.db, 'order-1', { scope: 'tenant-1', force: true, waitTimeout: '30s' });
    await waitForLockWaiters(t.pool, 1);

    await held.release();

    expect(await evicting).toMatchObject({ key: 'order-1', status: 'completed' });
    // The effect committed once; the key is gone, so the next call runs fn again.
    expect(await count(t.pool, 'charges')).toBe(1);
    expect(await keyRows(t.pool)).toEqual([]);
  });

  it('forced against a live transaction that rolls back while it waits, finds nothing to remove', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });
    const killer = await t.pool.connect();
    const evicting = evictKey(t.db, 'order-1', { scope: 'tenant-1', force: true, waitTimeout: '30s' });
    await waitForLockWaiters(t.pool, 1);

    // End the holder's transaction the way an operator would: terminate its backend.
    await killer.query(`select pg_terminate_backend(pid) from pg_stat_activity
                        where datname = current_database() and pid <> pg_backend_pid() and state = 'idle in transaction'`);
    killer.release();

    expect(await evicting).toBeNull();
    await expect(held.release()).rejects.toThrow();
    expect(await keyRows(t.pool)).toEqual([]);
    expect(await count(t.pool, 'charges')).toBe(0);
  });

  it.each([
    ['an empty key', '', {}, IdempotencyKeyInvalidError],
    ['a key over 255 characters', 'k'.repeat(256), {}, IdempotencyKeyInvalidError],
    ['a key with a control character', 'order\u0000', {}, IdempotencyKeyInvalidError],
    ['a scope that is not a string', 'order-1', { scope: 7 }, IdempotencyOptionsInvalidError],
    ['a scope with a lone surrogate', 'order-1', { scope: 'tenant-\udc00' }, IdempotencyOptionsInvalidError],
    ['a schema that is not an identifier', 'order-1', { schema: 'public.x' }, IdempotencyOptionsInvalidError],
    ['force that is not a boolean', 'order-1', { force: 'yes' }, IdempotencyOptionsInvalidError],
    ['a waitTimeout that is not a duration', 'order-1', { force: true, waitTimeout: 'soon' }, IdempotencyOptionsInvalidError],
    ['a waitTimeout over lock_timeout\'s limit', 'order-1', { force: true, waitTimeout: '30d' }, IdempotencyOptionsInvalidError],
  ])('refuses %s with a typed error and deletes nothing', async (_what, key, options, errorClass) => {
    await charge('order-1');
    const before = await keyRows(t.pool);

    const error = await evictKey(t.db, key as string, options as EvictKeyOptions).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(errorClass);
    expect(await keyRows(t.pool)).toEqual(before);
  });

  it('refuses a transaction: the deletion commits on its own', async () => {
    await charge('order-1');

    await expect(t.db.transaction((tx) => evictKey(tx, 'order-1', { scope: 'tenant-1' }))).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(await keyRows(t.pool)).toHaveLength(1);
  });
});
