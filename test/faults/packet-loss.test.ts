// Packet loss between the app and PostgreSQL: a PostgreSQL of the test's own
// runs in a network namespace, the shop processes reach it only across a veth
// pair, and an nftables rule in the namespace drops a random share of the
// packets of its port in both directions (see test/support/lossy-link.ts for
// why nftables and not tc netem). Setup and audit use the server's Unix
// socket, which the rule cannot touch, so only the shops suffer the loss.
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { migrateAll } from '../../examples/shop/setup.js';
import { runKeyStorm, shopRequests } from '../support/key-storm.js';
import { lossyLinkLeftovers, lossyLinkUnavailable, startLossyLink } from '../support/lossy-link.js';
import { ownPostgresUnavailable, startOwnPostgres } from '../support/own-postgres.js';
import { startRoundRobinProxy } from '../support/round-robin-proxy.js';
import { startShopCluster } from '../support/shop-cluster.js';
import { brokenAfterStorm } from '../support/storm-audit.js';

const SKU = 'lossy-widget';
const STOCK = 20;
const LOSS_PERCENT = 8;
const unavailable = (await lossyLinkUnavailable()) ?? (await ownPostgresUnavailable());

describe.skipIf(unavailable)(`${LOSS_PERCENT} % packet loss between two shop processes and PostgreSQL${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  it('drops packets both ways; every client copy gets its answer through fetchWithRetry; one effect per key; no process crash', async () => {
    const cleanups: (() => Promise<unknown>)[] = [];
    onTestFinished(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    });
    const link = await startLossyLink();
    cleanups.push(() => link.close());
    const server = await startOwnPostgres({ listenAddress: link.address, netns: link.netns });
    cleanups.push(() => server.stop());
    const pool = new pg.Pool({ connectionString: server.socketUrl, max: 3 });
    cleanups.push(() => pool.end());
    await migrateAll(drizzle({ client: pool }));
    await pool.query(`insert into shop_inventory (sku, stock) values ($1, $2)`, [SKU, STOCK]);
    const cluster = await startShopCluster(server.url, 2, { poolSize: 6 });
    cleanups.push(() => cluster.stop());
    const proxy = await startRoundRobinProxy({ targetPorts: cluster.ports });
    cleanups.push(() => proxy.close());

    await link.setLoss(server.port, LOSS_PERCENT);
    const requests = shopRequests({ payments: 60, orders: 25, welcomes: 10, sku: SKU });
    const results = await runKeyStorm(proxy.url, requests, { copies: 2, concurrency: 8, retries: 16, maxDelay: 500 });
    const { seen, droppedIn, droppedOut } = await link.counters();

    // The rule was in the way of the storm's traffic, and dropped some of it both ways.
    expect(seen).toBeGreaterThan(1_000);
    expect(droppedIn).toBeGreaterThan(0);
    expect(droppedOut).toBeGreaterThan(0);
    expect(droppedIn + droppedOut).toBeLessThan(seen);
    expect(cluster.shops.map((s) => s.alive()), cluster.output()).toEqual([true, true]);
    expect(await brokenAfterStorm(pool, results, { sku: SKU, initialStock: STOCK })).toEqual([]);
    for (const shop of cluster.shops) expect((await fetch(`http://127.0.0.1:${shop.port}/healthz`)).status).toBe(200);
  }, 60_000);

  it('leaves no namespace or veth interface behind', async () => {
    expect(await lossyLinkLeftovers()).toEqual([]);
  });
});
