// Shop processes whose only way to PostgreSQL is a link the test controls,
// behind a round-robin proxy, and a storm that cuts that link at COMMIT.
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrateAll } from '../../examples/shop/setup.js';
import type { TestDatabase } from './db.js';
import { sleep } from './fixtures.js';
import { runKeyStorm, shopRequests, type StormResult } from './key-storm.js';
import { startPgLinkProxy, type CutMoment, type PgLinkProxy } from './pg-link-proxy.js';
import { startRoundRobinProxy, type RoundRobinProxy } from './round-robin-proxy.js';
import { startShopCluster, type ShopCluster } from './shop-cluster.js';

export const CUT_MOMENTS: readonly CutMoment[] = ['before', 'during', 'after'];

export interface ShopsBehindLink {
  link: PgLinkProxy;
  cluster: ShopCluster;
  shops: RoundRobinProxy;
  /**
   * A storm of payments, orders on `stock` items of `sku` and welcome e-mails,
   * while the link is cut `cutsPerMoment` times at each moment of COMMIT.
   */
  stormWithCuts(sku: string, stock: number, cutsPerMoment: number): Promise<{ results: StormResult[]; cuts: Record<CutMoment, number> }>;
  close(): Promise<void>;
}

/**
 * Migrates `t`, then starts `processes` shops that reach it only through the link.
 *
 * @example
 * const setup = await startShopsBehindLink(t, 2); const { results, cuts } = await setup.stormWithCuts('w', 15, 4);
 */
export async function startShopsBehindLink(t: TestDatabase, processes: number): Promise<ShopsBehindLink> {
  await migrateAll(drizzle({ client: t.pool }));
  const link = await startPgLinkProxy({ port: Number(new URL(t.url).port || 5432) });
  const throughLink = new URL(t.url);
  throughLink.host = `127.0.0.1:${link.port}`;
  const cluster = await startShopCluster(throughLink.toString(), processes, { poolSize: 6 });
  const shops = await startRoundRobinProxy({ targetPorts: cluster.ports });
  return {
    link,
    cluster,
    shops,
    async stormWithCuts(sku, stock, cutsPerMoment) {
      await t.pool.query(`insert into shop_inventory (sku, stock) values ($1, $2)`, [sku, stock]);
      const requests = shopRequests({ payments: 80, orders: 25, welcomes: 10, sku });
      let done = false;
      const storm = runKeyStorm(shops.url, requests, { copies: 2, concurrency: 8, retries: 16, maxDelay: 400 }).finally(() => (done = true));
      const before = link.cuts;
      // Spaced out, so that the shops get work done between two cuts.
      for (let i = 0; i < cutsPerMoment * CUT_MOMENTS.length && !done; i++) {
        link.cutAtNextCommit(CUT_MOMENTS[i % CUT_MOMENTS.length]!);
        while (link.armed && !done) await sleep(5);
        await sleep(60);
      }
      const results = await storm;
      const after = link.cuts;
      return { results, cuts: Object.fromEntries(CUT_MOMENTS.map((m) => [m, after[m] - before[m]])) as Record<CutMoment, number> };
    },
    async close() {
      await shops.close();
      await cluster.stop();
      await link.close();
    },
  };
}
