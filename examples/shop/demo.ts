import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import type { Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { completeAbandonedKeys, startCompleter } from 'drizzle-idempotency';
import { startFaultProxy } from '../../tools/fault-proxy.js';
import { gatewayClient, type FaultSettings, type GatewayStats } from '../gateway/client.js';
import { spawnGateway } from '../gateway/process.js';
import { shopApp } from './app.js';
import { auditGateway, auditMail, auditShop, brokenInvariants, type GatewayAudit, type MailAudit, type ShopAudit } from './audit.js';
import { startShopBoss } from './boss.js';
import { startMailApi } from './mail-api.js';
import { startMailWorkers } from './mail-worker.js';
import { paymentWorkflow, type PaymentWorkflow } from './payment-workflow.js';
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
  /** Share of mail jobs whose handler crashes after the mail API accepted the e-mail (pg-boss redelivers them). */
  mailCrashRate: number;
  /** Share of sends the mail API answers 500 (the job fails and is redelivered). */
  mailOutageRate: number;
  /** The payment gateway's faults: charges whose answer it drops, answers it holds past `callTimeoutMs`, 500s. */
  gatewayFaults: FaultSettings;
  /** How long the shop waits for one charge before its outcome counts as unknown. */
  callTimeoutMs: number;
  /** Share of payments over the card's limit: the gateway declines them, the shop answers (and replays) 402. */
  declineRate: number;
  onProgress?: (phase: string, done: number, total: number) => void;
}

const GATEWAY = {
  gatewayFaults: { dropAfterCharge: 0.1, slowRate: 0.05, slowMs: 1_500, error500Rate: 0.1 },
  callTimeoutMs: 1_000,
  declineRate: 0.03,
};
export const FULL: Omit<DemoOptions, 'onProgress'> = { payments: 600, orders: 300, emails: 200, concurrency: 24, dropRate: 0.2, duplicateRate: 0.25, stock: 120, mailCrashRate: 0.2, mailOutageRate: 0.2, ...GATEWAY };
export const QUICK: Omit<DemoOptions, 'onProgress'> = { payments: 150, orders: 80, emails: 50, concurrency: 16, dropRate: 0.2, duplicateRate: 0.25, stock: 40, mailCrashRate: 0.2, mailOutageRate: 0.2, ...GATEWAY };

export interface DemoReport {
  ours: ClientTally;
  naive: ClientTally;
  dropped: { ours: number; naive: number };
  audit: ShopAudit;
  mail: MailAudit & { attempts: number; outages: number; repeatsDropped: number; crashes: number; workersKilled: number };
  /** The gateway's ledger against the payments; what the gateway did; payments answered 503 (outcome unknown, resumed later). */
  gateway: GatewayAudit & { stats: GatewayStats; unknownOutcomes: number };
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
    // Over the card's limit (1 000 000 cents) now and then: the gateway declines it.
    const amount = Math.random() < o.declineRate ? int(1_000_001, 2_000_000) : int(100, 50_000);
    requests.push({ path: '/payments', user: pick(users), key: randomUUID(), copies: copies(), body: { amount, currency: pick(['EUR', 'USD', 'GBP']) } });
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

  // The e-mails: pg-boss jobs on the same database, workers that crash after
  // sending now and then, and a mail API that answers 500 now and then.
  const mailApi = await startMailApi({ failRate: o.mailOutageRate });
  const boss = await startShopBoss(databaseUrl);
  // The first batch of e-mails goes to a worker process that is killed with
  // SIGKILL in its middle; the demo's own workers start after that, and get
  // the dead worker's jobs once they expired.
  const doomed = startDoomedWorker(databaseUrl, mailApi.url);
  const startWorkers = once(async () => {
    await doomed.kill();
    return startMailWorkers(db, boss, mailApi.url, { crashAfterSend: () => Math.random() < o.mailCrashRate });
  });
  void doomed.midBatch.then(startWorkers);
  // The payment gateway: a service of its own, in its own process, with its faults on.
  const gatewayProcess = await spawnGateway(databaseUrl);
  const gateway = gatewayClient(gatewayProcess.url);
  await gateway.setFaults(o.gatewayFaults);
  const payment = paymentWorkflow(gateway, { callTimeoutMs: o.callTimeoutMs });
  // Finishes payments whose client gave up: an unknown outcome left the key started.
  const completer = startCompleter(db, [payment], { interval: '1s', onError: () => {} });
  let unknownOutcomes = 0;
  const server = shopApp(db, boss, { gateway, workflow: payment, onError: () => void unknownOutcomes++ }).listen(0, '127.0.0.1');
  const proxy = await startFaultProxy({ targetPort: await listen(server) });
  try {
    const ours = await runStorm(proxy, stormRequests(o), {
      concurrency: o.concurrency,
      dropRate: o.dropRate,
      onProgress: (done, total) => o.onProgress?.('with drizzle-idempotency', done, total),
    });
    const workers = await startWorkers();
    const droppedOurs = proxy.dropped;
    const naiveRequests = stormRequests({ ...o, orders: 0, emails: 0 }).map((r) => ({ ...r, path: '/naive/payments' }));
    const naive = await runStorm(proxy, naiveRequests, {
      concurrency: o.concurrency,
      dropRate: o.dropRate,
      onProgress: (done, total) => o.onProgress?.('naive endpoint, same storm', done, total),
    });
    await workers.drain();
    await gateway.setFaults({ dropAfterCharge: 0, slowRate: 0, error500Rate: 0 });
    await finishPayments(db, pool, payment);
    const audit = await auditShop(pool, initialStock);
    const gatewayAudit = { ...(await auditGateway(pool, await gateway.ledger())), stats: await gateway.stats() };
    const stats = mailApi.stats();
    const mail = {
      ...(await auditMail(pool, mailApi.deliveries())),
      attempts: stats.attempts,
      outages: stats.outages,
      repeatsDropped: stats.duplicates,
      crashes: workers.crashes(),
      workersKilled: doomed.killedMidBatch() ? 1 : 0,
    };
    return {
      ours,
      naive,
      dropped: { ours: droppedOurs, naive: proxy.dropped - droppedOurs },
      audit,
      mail,
      gateway: { ...gatewayAudit, unknownOutcomes },
      broken: brokenInvariants(audit, mail, gatewayAudit),
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await completer.stop();
    await gatewayProcess.stop();
    await doomed.kill();
    await boss.stop({ graceful: false, wait: true });
    await proxy.close();
    await new Promise((resolve) => server.close(resolve));
    await mailApi.close();
    await pool.end();
  }
}

/**
 * Drives every payment key still started to its end: a client that gave up
 * left it with its lease released, and a completer pass resumes it. Keys
 * whose lease is live are still running here; the loop waits for them.
 */
async function finishPayments(db: Parameters<typeof completeAbandonedKeys>[0], pool: pg.Pool, payment: PaymentWorkflow): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    await completeAbandonedKeys(db, [payment]);
    const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from idempotency_keys where status = 'started'`);
    if (rows[0]!.n === 0 || Date.now() > deadline) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Calls `fn` once; later calls get the first call's promise. */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let called: Promise<T> | undefined;
  return () => (called ??= fn());
}

/** Starts mail-worker-process.ts; `midBatch` resolves when it hangs in the middle of its batch, `kill()` sends SIGKILL. */
function startDoomedWorker(databaseUrl: string, mailApiUrl: string) {
  const file = fileURLToPath(new URL('./mail-worker-process.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', file, databaseUrl, mailApiUrl], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let midBatch = false;
  let output = '';
  return {
    midBatch: new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('mid-batch')) {
          midBatch = true;
          resolve();
        }
      });
    }),
    killedMidBatch: () => midBatch,
    async kill(): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
