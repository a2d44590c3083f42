// postgres.js applications often create their client with a column name
// transform (postgres.camel and friends), which renames every column of every
// result, the library's own statements' included: `expires_ms` arrives as
// `expiresMs`, and the keys inside jsonb values: `order_id` as `orderId`.
// What the library reads and returns must not depend on it.
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { evictKey, idempotencyStats, inspectKey, lookupReplay, withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();
const clients: postgres.Sql[] = [];
afterAll(() => Promise.all(clients.map((c) => c.end({ timeout: 5 }))));

function postgresJs(options: postgres.Options<Record<string, postgres.PostgresType>> = {}) {
  const client = postgres(t.url, { ...options, max: 2, onnotice: () => {} });
  clients.push(client);
  return drizzle({ client });
}

describe.each([
  ['postgres.camel', postgres.camel],
  ['postgres.pascal', postgres.pascal],
  ['postgres.kebab', postgres.kebab],
])('postgres.js created with transform: %s', (name, transform) => {
  const db = postgresJs({ transform });
  const plain = postgresJs();

  it('gives withExpiry the key\'s expiry, on the first execution and on a replay', async () => {
    const key = `transform-expiry-${name}`;
    const first = await withIdempotencyOutcome(db, key, async () => ({ ok: true }), { withExpiry: true });
    const replay = await withIdempotencyOutcome(db, key, async () => ({ ok: false }), { withExpiry: true });
    const truth = await withIdempotencyOutcome(plain, key, async () => ({ ok: false }), { withExpiry: true });
    expect(first.expiresAt).toBeInstanceOf(Date);
    expect(first.expiresAt!.getTime()).toBe(truth.expiresAt!.getTime());
    expect(replay).toEqual({ value: { ok: true }, replayed: true, expiresAt: truth.expiresAt });
  });

  it('gives back what fn returned, snake_case keys included, first and on replays (its transforms rename the keys inside jsonb values too)', async () => {
    const key = `transform-value-${name}`;
    const result = { order_id: 7, line_items: [{ sku_code: 'widget' }] };
    const first = await withIdempotencyOutcome(db, key, async () => result);
    const replay = await withIdempotencyOutcome(db, key, async () => ({ order_id: 8, line_items: [] }));
    expect(first).toEqual({ value: result, replayed: false });
    expect(replay).toEqual({ value: result, replayed: true });
    expect(await lookupReplay(db, key)).toEqual({ value: result, replayed: true });
    expect((await inspectKey(db, key, { showResponse: true }))!.response).toEqual((await inspectKey(plain, key, { showResponse: true }))!.response);
  });

  it('reads inspectKey, idempotencyStats and evictKey as without the transform', async () => {
    const key = `transform-ops-${name}`;
    await withIdempotencyOutcome(db, key, async () => ({ ok: true }));
    const inspected = await inspectKey(db, key);
    const truth = await inspectKey(plain, key);
    expect({ ...inspected, now: undefined, ageMs: undefined }).toEqual({ ...truth, now: undefined, ageMs: undefined });
    expect(inspected!.expiresAt).toBeInstanceOf(Date);
    const stats = await idempotencyStats(db);
    expect(stats.inProgress).toBe(0);
    expect(stats.oldestLive?.createdAt).toBeInstanceOf(Date);
    expect(stats.tableBytes).toBeGreaterThan(0);
    const evicted = await evictKey(db, key);
    expect(evicted!.expiresAt).toEqual(truth!.expiresAt);
  });
});
