import { PGlite } from '@electric-sql/pglite';
import { drizzle } from 'drizzle-orm/pglite';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  evictKey,
  migrate,
  IdempotencyKeyInvalidError,
  IdempotencyOptionsInvalidError,
  inspectKey,
  withIdempotency,
  type InspectKeyOptions,
} from '../../src/index.js';
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

describe('inspectKey', () => {
  it('shows a completed key: status, age, expiry, fingerprint and result size, but not the result itself', async () => {
    await charge('order-1');

    const found = await inspectKey(t.db, 'order-1', { scope: 'tenant-1' });

    expect(found).toMatchObject({ scope: 'tenant-1', key: 'order-1', status: 'completed', expired: false, locked: false, inFlight: false, lockedUntil: null });
    expect(found!.createdAt).toBeInstanceOf(Date);
    expect(found!.completedAt!.getTime()).toBeGreaterThanOrEqual(found!.createdAt!.getTime());
    // 24 h after completion, by the database clock.
    expect(found!.expiresAt!.getTime() - found!.completedAt!.getTime()).toBe(86_400_000);
    expect(found!.ageMs).toBe(found!.now.getTime() - found!.createdAt!.getTime());
    expect(found!.fingerprint).toMatch(/\S/);
    expect(found!.responseBytes).toBeGreaterThan(0);
    expect(found).not.toHaveProperty('response');
  });

  it('shows the result, as every replay gets it, only with showResponse', async () => {
    const first = await charge('order-1');

    const found = await inspectKey(t.db, 'order-1', { scope: 'tenant-1', showResponse: true });

    expect(found!.response).toEqual(first);
  });

  it('shows a key a live transaction has claimed and not committed as claimed and in flight, without waiting for it', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });

    const found = await inspectKey(t.db, 'order-1', { scope: 'tenant-1' });

    expect(found).toMatchObject({ status: 'claimed', locked: true, inFlight: true, createdAt: null, fingerprint: null, responseBytes: null });
    // The look left the claim alone: the call completes, once.
    await expect(held.release()).resolves.toMatchObject({ chargeId: expect.any(Number) });
    expect(await keyRows(t.pool)).toMatchObject([{ scope: 'tenant-1', key: 'order-1', status: 'completed' }]);
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  it('shows a committed started row (a claim committed unfinished) as started and in flight', async () => {
    await insertKeyRow(t.pool, { key: 'stuck', status: 'started' });

    const found = await inspectKey(t.db, 'stuck');

    expect(found).toMatchObject({ scope: '', status: 'started', expired: false, locked: false, inFlight: true, completedAt: null, responseBytes: null });
    expect(found!.ageMs).toBeGreaterThanOrEqual(3_590_000);
  });

  it('shows the lease of leased work', async () => {
    await insertKeyRow(t.pool, { key: 'leased', status: 'started', lease: true });

    const found = await inspectKey(t.db, 'leased');

    expect(found).toMatchObject({ status: 'started', inFlight: true });
    expect(found!.lockedUntil!.getTime()).toBeGreaterThan(found!.now.getTime());
  });

  it('shows an expired key as expired, not in flight', async () => {
    await insertKeyRow(t.pool, { key: 'old', status: 'completed', expired: true, response: { ok: true } });

    const found = await inspectKey(t.db, 'old', { showResponse: true });

    expect(found).toMatchObject({ status: 'completed', expired: true, locked: false, inFlight: false, response: { ok: true } });
    expect(found!.expiresAt!.getTime()).toBeLessThanOrEqual(found!.now.getTime());
  });

  it('shows an expired key that a live call is taking over as locked and in flight', async () => {
    await insertKeyRow(t.pool, { key: 'old', scope: 'tenant-1', status: 'completed', expired: true, response: { ok: true } });
    const held = await holdKey(t.db, 'old', { scope: 'tenant-1' });

    const found = await inspectKey(t.db, 'old', { scope: 'tenant-1' });

    expect(found).toMatchObject({ status: 'completed', expired: true, locked: true, inFlight: true });
    await held.release();
    expect(await inspectKey(t.db, 'old', { scope: 'tenant-1' })).toMatchObject({ status: 'completed', expired: false, locked: false });
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  it('resolves to null for a key that does not exist, and leaves no row behind', async () => {
    await charge('order-1', 'tenant-1');

    expect(await inspectKey(t.db, 'order-2', { scope: 'tenant-1' })).toBeNull();
    // The same key in another scope is another key.
    expect(await inspectKey(t.db, 'order-1', { scope: 'tenant-2' })).toBeNull();
    expect(await keyRows(t.pool)).toMatchObject([{ scope: 'tenant-1', key: 'order-1' }]);
  });

  it('changes nothing: the row is the same before and after a look', async () => {
    await charge('order-1');
    const before = await t.pool.query('select * from idempotency_keys');

    await inspectKey(t.db, 'order-1', { scope: 'tenant-1', showResponse: true });

    expect((await t.pool.query('select * from idempotency_keys')).rows).toEqual(before.rows);
  });

  it.each([
    ['an empty key', '', {}, IdempotencyKeyInvalidError],
    ['a key over 255 characters', 'k'.repeat(256), {}, IdempotencyKeyInvalidError],
    ['a key with a lone surrogate', 'key-\ud800', {}, IdempotencyKeyInvalidError],
    ['a key that is not a string', 42, {}, IdempotencyKeyInvalidError],
    ['a scope with a control character', 'key', { scope: 'a\nb' }, IdempotencyOptionsInvalidError],
    ['a schema that is not an identifier', 'key', { schema: 'x; drop table idempotency_keys' }, IdempotencyOptionsInvalidError],
    ['showResponse that is not a boolean', 'key', { showResponse: 'yes' }, IdempotencyOptionsInvalidError],
  ])('refuses %s with a typed error and changes nothing', async (_what, key, options, errorClass) => {
    await charge('order-1');
    const before = await keyRows(t.pool);

    const error = await inspectKey(t.db, key as string, options as InspectKeyOptions).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(errorClass);
    expect((error as { code: string }).code).toMatch(/^IDEMPOTENCY_(KEY|OPTIONS)_INVALID$/);
    expect(await keyRows(t.pool)).toEqual(before);
  });

  it('refuses a transaction: the look needs a transaction of its own', async () => {
    await expect(t.db.transaction((tx) => inspectKey(tx, 'order-1'))).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
  });
});

describe('inspectKey and evictKey on PGlite (one connection: the look and its probe share it)', () => {
  it('looks at a completed key, finds a missing one, and evicts it so that the next call runs again', async () => {
    const client = new PGlite();
    try {
      const db = drizzle({ client });
      await migrate(db);
      let runs = 0;
      const call = () => withIdempotency(db, 'k', async () => ({ run: ++runs }));
      await call();

      expect(await inspectKey(db, 'k', { showResponse: true })).toMatchObject({ status: 'completed', inFlight: false, response: { run: 1 } });
      expect(await inspectKey(db, 'missing')).toBeNull();
      expect(await evictKey(db, 'k')).toMatchObject({ key: 'k', status: 'completed' });
      expect(await call()).toEqual({ run: 2 });
      const { rows } = await client.query<{ n: number }>('select count(*)::int as n from idempotency_keys');
      expect(rows[0]!.n).toBe(1);
    } finally {
      await client.close();
    }
  });
});
