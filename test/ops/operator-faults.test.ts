// inspectKey and evictKey where the database is not the friendly default: another
// isolation level, a live transaction that finishes while evict waits, a backend
// that dies mid-call, something that is not a database.
import { drizzle } from 'drizzle-orm/node-postgres';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  IdempotencyConnectionLostError,
  IdempotencyInFlightError,
  IdempotencyOptionsInvalidError,
  evictKey,
  inspectKey,
  withIdempotency,
  withIdempotencyOutcome,
} from '../../src/index.js';
import { terminateLockWaiter, waitForLockWaiters } from '../support/activity.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';
import { holdKey } from '../support/held-key.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();

beforeAll(async () => {
  await createBusinessTables(t.pool);
});

beforeEach(async () => {
  await t.pool.query('truncate idempotency_keys, charges');
});

const charge = (key: string) => withIdempotency(t.db, key, (tx) => insertCharge(tx, key, 1999), { scope: 'tenant-1' });

describe.each(['repeatable read', 'serializable'])('under default_transaction_isolation = %s', (level) => {
  const db = () => drizzle({ client: t.newPool(4, { options: `-c default_transaction_isolation=${level.replace(' ', '\\ ')}` }) });

  it('inspectKey never fails on a key whose claim commits while it looks', async () => {
    const operator = db();
    const seen: string[] = [];
    for (let i = 0; i < 25; i++) {
      const call = charge(`race-${i}`);
      const look = await inspectKey(operator, `race-${i}`, { scope: 'tenant-1' }).then(
        (found) => found?.status ?? 'none',
        (error: unknown) => `failed: ${(error as Error).message}`,
      );
      seen.push(look);
      await call;
    }
    expect(seen.filter((s) => s.startsWith('failed'))).toEqual([]);
  });

  it('evictKey with force, against a live transaction that commits an unfinished claim while it waits, removes it', async () => {
    // The shape of a stuck key: a claim whose transaction commits before the call ends.
    const holder = await t.pool.connect();
    await holder.query('begin');
    await holder.query(`insert into idempotency_keys (scope, key, status, expires_at) values ('tenant-1', 'stuck', 'started', now() + interval '1 day')`);
    const evicting = evictKey(db(), 'stuck', { scope: 'tenant-1', force: true, waitTimeout: '30s' });
    await waitForLockWaiters(t.pool, 1);

    await holder.query('commit');
    holder.release();

    expect(await evicting).toMatchObject({ key: 'stuck', status: 'started' });
    expect(await keyRows(t.pool)).toEqual([]);
  });
});

describe('evictKey with force against a live transaction that completes the key while evict waits', () => {
  it('leaves the result it committed, so that a retry replays it instead of running fn a second time', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });
    const evicting = evictKey(t.db, 'order-1', { scope: 'tenant-1', force: true, waitTimeout: '30s' }).catch((e: unknown) => e);
    await waitForLockWaiters(t.pool, 1);

    await held.release();

    const error = await evicting;
    expect(error).toBeInstanceOf(IdempotencyInFlightError);
    expect((error as Error).message).toMatch(/completed while evict waited.*nothing was removed/);
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'order-1', status: 'completed' }]);
    const retry = await withIdempotencyOutcome(t.db, 'order-1', (tx) => insertCharge(tx, 'order-1', 100), { scope: 'tenant-1' });
    expect(retry.replayed).toBe(true);
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  it('removes a result that was there before the wait, once the transaction holding its row lets go', async () => {
    await charge('order-1');
    const reader = await t.pool.connect();
    await reader.query('begin');
    await reader.query(`select 1 from idempotency_keys where key = 'order-1' for share`);
    const evicting = evictKey(t.db, 'order-1', { scope: 'tenant-1', force: true, waitTimeout: '30s' });
    await waitForLockWaiters(t.pool, 1);

    await reader.query('commit');
    reader.release();

    expect(await evicting).toMatchObject({ key: 'order-1', status: 'completed' });
    expect(await keyRows(t.pool)).toEqual([]);
  });

  it('still removes that completed key when asked again, without force: the operator has now seen it', async () => {
    await charge('order-1');

    expect(await evictKey(t.db, 'order-1', { scope: 'tenant-1' })).toMatchObject({ status: 'completed' });
    expect(await keyRows(t.pool)).toEqual([]);
  });
});

describe('a connection that dies while evictKey waits', () => {
  it('fails the call with the retryable IDEMPOTENCY_CONNECTION_LOST, removes nothing, and leaves the process running', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });
    const evicting = evictKey(t.db, 'order-1', { scope: 'tenant-1', force: true, waitTimeout: '30s' }).catch((e: unknown) => e);
    try {
      await terminateLockWaiter(t.pool);

      expect(await evicting).toBeInstanceOf(IdempotencyConnectionLostError);
    } finally {
      await held.release();
    }
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'order-1', status: 'completed' }]);
    // The pool still serves: the dead connection was not given back to it.
    expect(await inspectKey(t.db, 'order-1', { scope: 'tenant-1' })).toMatchObject({ status: 'completed' });
  });
});

describe('something that is not a database', () => {
  it.each([
    ['null', null],
    ['an empty object', {}],
    ['a string', 'postgres://localhost/db'],
  ])('is refused with IDEMPOTENCY_OPTIONS_INVALID: %s', async (_what, db) => {
    await expect(inspectKey(db as never, 'order-1')).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    await expect(evictKey(db as never, 'order-1')).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
  });
});

describe('a schema without idempotency_keys', () => {
  it('is IDEMPOTENCY_OPTIONS_INVALID naming migrate(), as withIdempotency says it', async () => {
    for (const call of [() => inspectKey(t.db, 'order-1', { schema: 'nowhere' }), () => evictKey(t.db, 'order-1', { schema: 'nowhere' })]) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdempotencyOptionsInvalidError);
      expect((error as Error).message).toMatch(/idempotency_keys table does not exist in schema "nowhere": run migrate\(\)/);
    }
  });
});

describe('a statement_timeout shorter than the wait of evict --force', () => {
  it('ends the wait with IDEMPOTENCY_IN_FLIGHT that names statement_timeout, and removes nothing', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });
    const impatient = drizzle({ client: t.newPool(2, { options: '-c statement_timeout=200' }) });
    try {
      const error = await evictKey(impatient, 'order-1', { scope: 'tenant-1', force: true, waitTimeout: '30s' }).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(IdempotencyInFlightError);
      expect((error as Error).message).toMatch(/statement_timeout.*nothing was removed/);
    } finally {
      await held.release();
    }
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'order-1', status: 'completed' }]);
  });
});

describe('operators looking at the same absent key at once', () => {
  it('each finds no key: one look is not a live transaction\'s claim to another, nor to an eviction', async () => {
    const found: string[] = [];
    for (let i = 0; i < 40; i++) {
      const key = `absent-${i}`;
      const outcomes = await Promise.all([
        inspectKey(t.db, key),
        inspectKey(t.db, key),
        evictKey(t.db, key).catch((e: unknown) => ({ status: `evict failed: ${(e as Error).message}` })),
      ]);
      found.push(...outcomes.map((o) => o?.status ?? 'none'));
    }
    expect(found.filter((s) => s !== 'none')).toEqual([]);
    expect(await keyRows(t.pool)).toEqual([]);
  });
});
