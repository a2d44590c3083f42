// `npm start`: the shop behind a fault-injecting proxy, a retry storm of
// clients, and an audit of the database. Embedded PostgreSQL unless
// DATABASE_URL is set. Exits non-zero if any invariant fails.
import { parseArgs } from 'node:util';
import pg from 'pg';
import { exitIfUnavailable, startEmbeddedPostgres } from '../../tools/embedded-db.js';
import { FULL, QUICK, runDemo, type DemoOptions, type DemoReport } from './demo.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    payments: { type: 'string' },
    orders: { type: 'string' },
    emails: { type: 'string' },
    concurrency: { type: 'string' },
    'drop-rate': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('usage: npm start -- [--quick] [--payments N] [--orders N] [--emails N] [--concurrency N] [--drop-rate 0..1]');
  process.exit(0);
}
const base = values.quick ? QUICK : FULL;
const number = (value: string | undefined, fallback: number) => (value === undefined ? fallback : Number(value));
const options: DemoOptions = {
  ...base,
  payments: number(values.payments, base.payments),
  orders: number(values.orders, base.orders),
  emails: number(values.emails, base.emails),
  concurrency: number(values.concurrency, base.concurrency),
  dropRate: number(values['drop-rate'], base.dropRate),
  onProgress: progress,
};

let lastPhase = '';
let lastShown = -1;
function progress(phase: string, done: number, total: number) {
  const width = 30;
  const filled = Math.round((done / total) * width);
  const line = `${phase.padEnd(28)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`;
  if (process.stderr.isTTY) {
    process.stderr.write(`\r${line}${done === total ? '\n' : ''}`);
  } else if (phase !== lastPhase || Math.floor((done / total) * 4) !== lastShown || done === total) {
    // Not a terminal (CI logs): a line per quarter instead of a redrawn bar.
    lastPhase = phase;
    lastShown = Math.floor((done / total) * 4);
    process.stderr.write(`${line}\n`);
  }
}

function print(r: DemoReport) {
  const a = r.audit;
  const g = r.gateway;
  const rows: [string, string | number, string | number][] = [
    ['requests sent (double clicks included)', r.ours.requests, r.naive.requests],
    ['HTTP attempts', r.ours.attempts, r.naive.attempts],
    ['retries', r.ours.retries, r.naive.retries],
    ['answers lost by the proxy', r.dropped.ours, r.dropped.naive],
    ['replayed answers', r.ours.replays, r.naive.replays],
    ['409 in flight (retried)', r.ours.inFlight409, r.naive.inFlight409],
    ['requests never answered', r.ours.unanswered, r.naive.unanswered],
    ['unique payment keys', a.paymentKeys, a.naivePaymentKeys],
    ['payments in the database', a.payments, a.naivePayments],
    ['duplicate payments', a.duplicatePayments, a.naiveDuplicatePayments],
    ["charges in the gateway's ledger", g.charges, g.naiveCharges],
    ['DUPLICATE CHARGES (gateway ledger)', g.charges - g.paidKeys, g.naiveDuplicateCharges],
    ['payments declined by the gateway (402, stored)', g.declinedKeys, '-'],
    ['gateway: dropped after charging / slow / 500s', `${g.stats.dropped} / ${g.stats.slowed} / ${g.stats.failed500}`, '(both storms)'],
    ['payments answered 503, resumed by a retry', g.unknownOutcomes, '-'],
    ['orders', a.orders, '-'],
    ['duplicate orders', a.duplicateOrders, '-'],
    ['welcome e-mail jobs (pg-boss)', a.welcomeJobs, '-'],
    ['order confirmation jobs (pg-boss)', a.confirmationJobs, '-'],
    ['mail API: 500s / handler crashes', `${r.mail.outages} / ${r.mail.crashes}`, '-'],
    ['mail workers killed mid-batch (SIGKILL)', r.mail.workersKilled, '-'],
    ['mail API: repeats it dropped', r.mail.repeatsDropped, '-'],
    ['e-mails delivered', r.mail.delivered, '-'],
    ['e-mails delivered twice / never', `${r.mail.deliveredTwice} / ${r.mail.neverDelivered}`, '-'],
    ...a.stock.map((s): [string, string, string] => [`stock ${s.sku} (start ${s.initial})`, `${s.sold} sold, ${s.left} left`, '-']),
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(`\n${'audit (from the database)'.padEnd(w)} | drizzle-idempotency | naive endpoint`);
  console.log(`${'-'.repeat(w)}-|---------------------|---------------`);
  for (const [k, ours, naive] of rows) console.log(`${k.padEnd(w)} | ${String(ours).padStart(19)} | ${String(naive).padStart(14)}`);
  console.log(`\nstatuses (ours): ${JSON.stringify(r.ours.answered)}; finished in ${r.seconds.toFixed(1)} s`);
  console.log(r.broken.length ? `FAILED: ${r.broken.join('; ')}` : 'OK: every key took effect once (one charge per payment key in the gateway\'s ledger), stock never went negative, every e-mail went out once (one per welcome request, one per order).');
}

const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres().catch(exitIfUnavailable);
const serverUrl = process.env.DATABASE_URL ?? embedded!.url;
console.log(`PostgreSQL: ${embedded ? 'embedded (temporary)' : 'DATABASE_URL'}`);
const demoDb = 'drizzle_idempotency_demo';
const admin = new pg.Client({ connectionString: serverUrl });
try {
  await admin.connect();
  await admin.query(`drop database if exists ${demoDb} with (force)`);
  await admin.query(`create database ${demoDb}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${demoDb}`;
  const report = await runDemo(url.toString(), options);
  print(report);
  process.exitCode = report.broken.length ? 1 : 0;
} finally {
  await embedded?.stop();
}
