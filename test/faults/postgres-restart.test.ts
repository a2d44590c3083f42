import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { migrateAll } from '../../examples/shop/setup.js';
import { runKeyStorm, shopRequests } from '../support/key-storm.js';
import { ownPostgresUnavailable, startOwnPostgres } from '../support/own-postgres.js';
import { startRoundRobinProxy } from '../support/round-robin-proxy.js';
import { startShopCluster } from '../support/shop-cluster.js';
import { brokenAfterStorm } from '../support/storm-audit.js';

const SKU = 'restart-widget';
const STOCK = 20;
const unavailable = await ownPostgresUnavailable();

describe.skipIf(unavailable)(`PostgreSQL restarted in the middle of a storm${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  it('keeps both shop processes serving; every client finishes with retries; one effect per key', async () => {
    const server = await startOwnPostgres();
    const pool = new pg.Pool({ connectionString: server.url, max: 3 });
    pool.on('error', () => {}); // its idle connections die with the restarts
    const cleanups: (() => Promise<unknown>)[] = [() => server.stop(), () => pool.end().catch(() => {})];
    onTestFinished(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup();
    });
    await migrateAll(drizzle({ client: pool }));
    await pool.query(`insert into shop_inventory (sku, stock) values ($1, $2)`, [SKU, STOCK]);
    const cluster = await startShopCluster(server.url, 2, { poolSize: 6 });
    cleanups.push(() => cluster.stop());
    const proxy = await startRoundRobinProxy({ targetPorts: cluster.ports });
    cleanups.push(() => proxy.close());

    const requests = shopRequests({ payments: 60, orders: 30, welcomes: 10, sku: SKU });
    let answered = 0;
    const storm = runKeyStorm(proxy.url, requests, { copies: 2, concurrency: 8, retries: 16, maxDelay: 500, onAnswer: () => answered++ });
    const total = requests.length * 2;
    while (answered < total / 4) await new Promise((resolve) => setTimeout(resolve, 5));
    await server.restart('fast');
    const afterFirst = answered;
    while (answered < total / 2) await new Promise((resolve) => setTimeout(resolve, 5));
    await server.restart('immediate');
    const afterSecond = answered;
    const results = await storm;

    expect(cluster.shops.map((s) => s.alive()), cluster.output()).toEqual([true, true]);
    // Both restarts hit the storm, not its end.
    expect(afterFirst).toBeLessThan(total);
    expect(afterSecond).toBeLessThan(total);
    // Requests in flight during the restarts failed and were retried.
    expect(results.flatMap((r) => r.copies).filter((c) => c.attempts > 1).length).toBeGreaterThan(0);
    expect(await brokenAfterStorm(pool, results, { sku: SKU, initialStock: STOCK })).toEqual([]);
    for (const shop of cluster.shops) expect((await fetch(`http://127.0.0.1:${shop.port}/healthz`)).status).toBe(200);
  }, 60_000);
});
