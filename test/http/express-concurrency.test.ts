// Test 2 of the HTTP issue: 50 concurrent POSTs with one key. The first holds
// its transaction open until every duplicate has arrived, so the duplicates
// really meet an uncommitted claim.
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IdempotentRouteOptions } from '../../src/express.js';
import { testDatabase } from '../support/db.js';
import { waitForWaitingCalls, whenSettled } from '../support/activity.js';
import { count, createBusinessTables, deferred, keyRows } from '../support/fixtures.js';
import { listen, type Listening } from '../support/http.js';
import { paymentsApp, stockUp } from '../support/payments-app.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

const DUPLICATES = 50;
let server: Listening | undefined;
afterEach(async () => server?.close());

// The same storms on a default pool and tuned: named statements on a pool in
// pipeline mode, where the route's transaction sends BEGIN with the claim. Each
// has its own pool, closed after its storms: two pools of 50 busy connections
// at once would not fit the server's max_connections.
const SETUPS: { name: string; pool: pg.PoolConfig; options: Partial<IdempotentRouteOptions> }[] = [
  { name: 'default', pool: {}, options: {} },
  { name: 'tuned', pool: { pipeline: true }, options: { prepare: true } },
];

/** A payments service whose first execution waits for `release` after its writes. */
async function heldService(db: NodePgDatabase, options: Partial<IdempotentRouteOptions>) {
  const entered = deferred();
  const release = deferred();
  let executions = 0;
  server = await listen(
    paymentsApp(db, options, {
      afterWrites: async () => {
        executions++;
        entered.resolve();
        await release.promise;
      },
    }),
  );
  return { url: `${server.url}/payments`, entered: entered.promise, release: release.resolve, executions: () => executions };
}

const post = (url: string, key: string, sku: string) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, 'x-customer': 'alice' },
    body: JSON.stringify({ amount: 500, sku, ref: key }),
  });

async function answer(res: Response) {
  return {
    status: res.status,
    body: (await res.json()) as unknown,
    location: res.headers.get('location'),
    replayed: res.headers.get('idempotent-replayed'),
  };
}

describe.each(SETUPS)('50 concurrent POSTs with one key, $name pool', ({ name, pool: config, options }) => {
  let pool: pg.Pool;
  let db: NodePgDatabase;
  beforeAll(() => {
    pool = t.newPool(DUPLICATES + 5, config);
    db = drizzle({ client: pool });
  });
  afterAll(() => pool.end());

  it('charges once and, waiting, gives all 50 the same answer', async () => {
    const [key, sku] = [`storm-wait-${name}`, `sku-wait-${name}`];
    await stockUp(t.db, sku, 100);
    const service = await heldService(db, { ...options, onInFlight: 'wait' });
    const requests = Array.from({ length: DUPLICATES }, () => post(service.url, key, sku));
    await service.entered;
    await waitForWaitingCalls(DUPLICATES - 1);
    service.release();
    const answers = await Promise.all(requests.map(async (r) => answer(await r)));

    expect(service.executions()).toBe(1);
    const first = answers.find((a) => a.replayed === null)!;
    expect(first).toMatchObject({ status: 201, body: { amount: 500, sku } });
    expect(answers.filter((a) => a.replayed === 'true')).toHaveLength(DUPLICATES - 1);
    for (const a of answers) expect({ ...a, replayed: undefined }).toEqual({ ...first, replayed: undefined });
    // The audit.
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
    expect(await count(t.pool, 'stock', 'sku = $1 and quantity = 99', [sku])).toBe(1);
    expect((await keyRows(t.pool)).filter((k) => k.key === key)).toMatchObject([{ status: 'completed' }]);
  });

  it('charges once and, rejecting, answers 409 with Retry-After, then replays the same answer to every retry', async () => {
    const [key, sku] = [`storm-reject-${name}`, `sku-reject-${name}`];
    await stockUp(t.db, sku, 100);
    const service = await heldService(db, { ...options, onInFlight: 'reject', retryAfter: 2 });
    const requests = Array.from({ length: DUPLICATES }, () => post(service.url, key, sku));
    await service.entered;
    // Every duplicate is answered while the first still holds the key.
    await whenSettled(requests, DUPLICATES - 1);
    service.release();
    const responses = await Promise.all(requests);
    const rejected = responses.filter((r) => r.status === 409);
    expect(rejected).toHaveLength(DUPLICATES - 1);
    for (const r of rejected) {
      expect(r.headers.get('retry-after')).toBe('2');
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(await r.json()).toMatchObject({ status: 409, code: 'IDEMPOTENCY_IN_FLIGHT', retryable: true });
    }
    const first = await answer(responses.find((r) => r.status !== 409)!);
    expect(first).toMatchObject({ status: 201, replayed: null });

    const retried = await Promise.all(rejected.map(async () => answer(await post(service.url, key, sku))));
    for (const a of retried) expect(a).toEqual({ ...first, replayed: 'true' });
    expect(service.executions()).toBe(1);
    // The audit.
    expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
    expect(await count(t.pool, 'stock', 'sku = $1 and quantity = 99', [sku])).toBe(1);
    expect((await keyRows(t.pool)).filter((k) => k.key === key)).toMatchObject([{ status: 'completed' }]);
  });
});
