import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { startFaultProxy } from '../../tools/fault-proxy.js';
import { shopApp } from './app.js';
import { auditShop, brokenInvariants, type ShopAudit } from './audit.js';
import { openMailSink, startOutboxWorker } from './outbox-worker.js';
import { migrateAll } from './setup.js';
import { runStorm, type ClientTally, type StormRequest } from './storm.js';

export interface DemoOptions {
  payments: number;
  orders: number;
  emails: number;
  /** Concurrent clients. */
  concurrency: number;
  /** Share of answers the proxy loses after the server committed. */
  dropRate: number;
  /** Share of logical requests sent twice at once with one key (a double click). */
  duplicateRate: number;
  /** Units of each of three SKUs: orders beyond it are refused, never oversold. */
  stock: number;
  onProgress?: (phase: string, done: number, total: number) => void;
}

export const FULL: Omit<DemoOptions, 'onProgress'> = { payments: 600, orders: 300, emails: 200, concurrency: 24, dropRate: 0.2, duplicateRate: 0.25, stock: 120 };
export const QUICK: Omit<DemoOptions, 'onProgress'> = { payments: 150, orders: 80, emails: 50, concurrency: 16, dropRate: 0.2, duplicateRate: 0.25, stock: 40 };

export interface DemoReport {
  ours: ClientTally;
  naive: ClientTally;
  dropped: { ours: number; naive: number };
  audit: ShopAudit;
  sink: { lines: number; distinct: number };
  broken: string[];
  seconds: number;
}

const SKUS = ['sku-apple', 'sku-pear', 'sku-plum'];
const users = Array.from({ length: 12 }, (_, i) => `user-${i + 1}`);
const pick = <T>(list: readonly T[]) => list[Math.floor(Math.random() * list.length)]!;
const int = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));

function stormRequests(o: DemoOptions): StormRequest[] {
  const copies = () => (Math.random() < o.duplicateRate ? int(2, 3) : 1);
  const requests: StormRequest[] = [];
  for (let i = 0; i < o.payments; i++) {
    requests.push({ path: '/payments', user: pick(users), key: randomUUID(), copies: copies(), body: { amount: int(100, 50_000), currency: pick(['EUR', 'USD', 'GBP']) } });
  }
  for (let i = 0; i < o.orders; i++) {
    const items = [...new Set(Array.from({ length: int(1, 3) }, () => pick(SKUS)))].map((sku) => ({ sku, quantity: int(1, 3) }));
    requests.push({ path: '/orders', user: pick(users), key: randomUUID(), copies: copies(), body: { items } });
  }
  for (let i = 0; i < o.emails; i++) {
    requests.push({ path: '/notifications/welcome', user: pick(users), key: randomUUID(), copies: copies(), body: { email: `new-${i}@example.test` } });
  }
  return requests.sort(() => Math.random() - 0.5);
}

const listen = (server: Server) => new Promise<number>((resolve) => server.on('listening', () => resolve((server.address() as { port: number }).port)));

/**
 * Runs the storm against a shop on `databaseUrl` (an empty database): ours,
 * then the naive endpoint for contrast, then audits the database.
 */
export async function runDemo(databaseUrl: string, o: DemoOptions): Promise<DemoReport> {
  const started = performance.now();
  const pool = new pg.Pool({ connectionString: databaseUrl, max: o.concurrency + 4 });
  pool.on('error', () => {});
  const db = drizzle({ client: pool });
  await migrateAll(db);
  const initialStock = Object.fromEntries(SKUS.map((sku) => [sku, o.stock]));
  for (const sku of SKUS) await pool.query('insert into shop_inventory (sku, stock) values ($1, $2) on conflict (sku) do update set stock = $2', [sku, o.stock]);

  const sinkDir = await mkdtemp(join(tmpdir(), 'shop-mail-'));
  const sinkPath = join(sinkDir, 'mail.jsonl');
  const worker = startOutboxWorker(db, await openMailSink(sinkPath), { every: 50 });
  const server = shopApp(db).listen(0, '127.0.0.1');
  const proxy = await startFaultProxy({ targetPort: await listen(server) });
  try {
    const ours = await runStorm(proxy, stormRequests(o), {
      concurrency: o.concurrency,
      dropRate: o.dropRate,
      onProgress: (done, total) => o.onProgress?.('with drizzle-idempotency', done, total),
    });
    const droppedOurs = proxy.dropped;
    const naiveRequests = stormRequests({ ...o, orders: 0, emails: 0 }).map((r) => ({ ...r, path: '/naive/payments' }));
    const naive = await runStorm(proxy, naiveRequests, {
      concurrency: o.concurrency,
      dropRate: o.dropRate,
      onProgress: (done, total) => o.onProgress?.('naive endpoint, same storm', done, total),
    });
    await worker.drain();
    const audit = await auditShop(pool, initialStock);
    const lines = (await readFile(sinkPath, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    const sink = { lines: lines.length, distinct: new Set(lines.map((l) => (JSON.parse(l) as { messageId: string }).messageId)).size };
    return {
      ours,
      naive,
      dropped: { ours: droppedOurs, naive: proxy.dropped - droppedOurs },
      audit,
      sink,
      broken: brokenInvariants(audit, sink.lines, sink.distinct),
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await worker.stop();
    await proxy.close();
    await new Promise((resolve) => server.close(resolve));
    await pool.end();
    await rm(sinkDir, { recursive: true, force: true });
  }
}
