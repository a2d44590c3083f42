import { drizzle } from 'drizzle-orm/node-postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { migrateAll } from '../../examples/shop/setup.js';
import { testDatabase } from '../support/db.js';
import { runKeyStorm, shopRequests } from '../support/key-storm.js';
import { startRoundRobinProxy } from '../support/round-robin-proxy.js';
import { startShopCluster } from '../support/shop-cluster.js';
import { brokenAfterStorm } from '../support/storm-audit.js';

const PROCESSES = 4;
const SKU = 'scale-widget';
const STOCK = 30;

const t = await testDatabase({ max: 5 });
await migrateAll(drizzle({ client: t.pool }));
await t.pool.query(`insert into shop_inventory (sku, stock) values ($1, $2)`, [SKU, STOCK]);
const cluster = await startShopCluster(t.url, PROCESSES, { poolSize: 8 });
// A seeded generator: which answers get lost is the same every run.
let seed = 17;
const random = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
const proxy = await startRoundRobinProxy({ targetPorts: cluster.ports, dropRate: 0.08, random });
afterAll(async () => {
  await proxy.close();
  await cluster.stop();
});

describe(`${PROCESSES} shop processes on one PostgreSQL behind a round-robin proxy`, () => {
  it('takes a retry storm whose duplicates hit different processes at once: one effect per key, nothing stuck', async () => {
    const requests = shopRequests({ payments: 120, orders: 50, welcomes: 20, sku: SKU });
    const results = await runKeyStorm(proxy.url, requests, { copies: 3, concurrency: 12 });

    // The storm was a storm: answers were lost and retried, duplicates met on different processes.
    expect(proxy.dropped).toBeGreaterThan(0);
    expect(results.flatMap((r) => r.copies).filter((c) => c.attempts > 1).length).toBeGreaterThan(0);
    expect(proxy.connectionsPerBackend.every((n) => n > 0)).toBe(true);
    const spread = requests.filter((r) => proxy.backendsOfKey(r.key).size >= 2).length;
    expect(spread).toBeGreaterThan(requests.length / 2);
    // Stock was scarce: some orders were refused, and each refusal is the stored answer too.
    expect(results.filter((r) => r.request.path === '/orders' && r.copies[0]!.status === 409)).toHaveLength(50 - STOCK);

    expect(await brokenAfterStorm(t.pool, results, { sku: SKU, initialStock: STOCK })).toEqual([]);
    expect(cluster.shops.map((s) => s.alive())).toEqual(Array(PROCESSES).fill(true));
  });
});
