// N demo shops (examples/shop/server.ts, as `npm run serve` starts it) on one
// database, each a process of its own on a port of its own.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../tools/embedded-db.js';
import { launch, type Launched } from './processes.js';

export interface ShopProcess {
  port: number;
  process: Launched;
  /** Still running: neither exited nor killed by a signal. */
  alive(): boolean;
}

export interface ShopCluster {
  shops: ShopProcess[];
  ports: number[];
  /** Output of every shop, for a failing assertion's message. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts `count` shops against `databaseUrl` (already migrated: they would race
 * to create the shop's tables otherwise) and resolves once all listen.
 *
 * @example
 * const cluster = await startShopCluster(t.url, 4);
 */
export async function startShopCluster(databaseUrl: string, count: number, options: { poolSize?: number } = {}): Promise<ShopCluster> {
  const folder = await mkdtemp(join(tmpdir(), 'shop-cluster-'));
  const shops: ShopProcess[] = [];
  for (let i = 0; i < count; i++) {
    const port = await freePort();
    const child = launch(process.execPath, ['--import', 'tsx', 'examples/shop/server.ts'], {
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        PORT: String(port),
        POOL_SIZE: String(options.poolSize ?? 10),
        MAIL_SINK: join(folder, `mail-${i}.jsonl`),
        // Payments are leased work: a payment whose write was cut off (or whose process died) holds its key until
        // its lease ends, 30 s by default; 5 s keeps such a key within a test's patience.
        SHOP_PAYMENT_LEASE: '5s',
        SHOP_COMPLETER_INTERVAL: '1s',
      },
    });
    shops.push({ port, process: child, alive: () => child.child.exitCode === null && child.child.signalCode === null });
  }
  const cluster: ShopCluster = {
    shops,
    ports: shops.map((s) => s.port),
    output: () => shops.map((s, i) => `--- shop ${i} ---\n${s.process.output()}`).join('\n'),
    async stop() {
      await Promise.all(
        shops.map(async (s) => {
          if (!s.alive()) return;
          s.process.child.kill('SIGTERM');
          const timer = setTimeout(() => s.process.child.kill('SIGKILL'), 5_000);
          await s.process.exited;
          clearTimeout(timer);
        }),
      );
      await rm(folder, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(shops.map((s) => s.process.waitFor(/listening/)));
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
