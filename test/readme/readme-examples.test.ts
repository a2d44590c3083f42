// Issue 18: every ```ts block of the README, with the prelude linked above it,
// type-checks strictly, and the ones that do something run against PostgreSQL
// and do what the text around them says. A README edit that breaks an example
// fails here. How a block becomes a module: scripts/readme-examples.ts.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { relative } from 'node:path';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { is } from 'drizzle-orm';
import { getTableConfig, PgSchema, type PgTable } from 'drizzle-orm/pg-core';
import type pg from 'pg';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { fetchWithRetry, type RetriedResponse } from '../../src/client.js';
import {
  IdempotencyInFlightError,
  IdempotencyKeyReusedError,
  IdempotencyMigrationConflictError,
  migrate,
  telemetryHash,
  withIdempotency,
} from '../../src/index.js';
import { readmeExamples, readReadme, ROOT, writeExamples, type ReadmeExample } from '../../scripts/readme-examples.js';
import { testDatabase } from '../support/db.js';
import { drizzleMajor } from '../support/drizzle-version.js';
import { waitForLockWaiters } from '../support/activity.js';
import { count, deferred, sleep } from '../support/fixtures.js';
import { listen, type Listening } from '../support/http.js';
import { webListener } from '../support/web-server.js';
import { jobState } from '../support/boss.js';
import { startMailApi, type MailApi } from '../../examples/shop/mail-api.js';
import { startGateway, type Gateway } from '../../examples/gateway/app.js';
import { gatewayClient } from '../../examples/gateway/client.js';
import { migrateGateway } from '../../examples/gateway/store.js';

const examples = readmeExamples(readReadme());
const files = writeExamples(examples, String(process.pid));
afterAll(() => {
  for (const file of files.values()) rmSync(file, { force: true });
});

/** Imports a module with `env` set while it loads (its top level reads process.env). */
async function importWith<T>(path: string, env: Record<string, string>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(env).map((name) => [name, process.env[name]]));
  Object.assign(process.env, env);
  try {
    return (await import(path)) as T;
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

/** Imports an example (once: a second load gives the same module). */
const load = <T>(id: string, env: Record<string, string>) => importWith<T>(files.get(id)!, env);

/** Runs an example again: a copy of it, next to its prelude (which stays loaded), imported afresh. */
let runs = 0;
function runAgain<T>(id: string): Promise<T> {
  const copy = files.get(id)!.replace(/\.ts$/, `-run${++runs}.ts`);
  copyFileSync(files.get(id)!, copy);
  copies.push(copy);
  return importWith<T>(copy, {});
}
const copies: string[] = [];
afterAll(() => {
  for (const file of copies) rmSync(file, { force: true });
});

type Database = NodePgDatabase & { $client: pg.Pool };

describe('the README', () => {
  it('has a prelude linked above every TypeScript block, and these examples', () => {
    expect(examples.map((e) => e.id)).toEqual([
      'schema',
      'transaction',
      'replay',
      'serializable',
      'pipeline',
      'migrate',
      'drizzle-config',
      'migrations-folder',
      'migrations-folder-drizzle1',
      'drizzle-kit-schema',
      'drizzle-kit-schema-billing',
      'express-server',
      'fastify-server',
      'hono-server',
      'client',
      'workflow-route',
      'messages',
      'outbox',
      'gateway-payment',
      'sweeper',
      'support-desk',
      'telemetry-log',
      'otel',
    ]);
  });

  it.each([
    ['a ts block without a prelude line', '# x\n\n```ts\nconst a = 1;\n```\n', /needs a line right above it/],
    ['a block fenced as typescript', '<sub>[p](test/readme/p.ts)</sub>\n```typescript\nconst a = 1;\n```\n', /fence it as ```ts/],
    ['an indented ts block', '- item\n  ```ts\n  const a = 1;\n  ```\n', /fence it as ```ts/],
    ['a ts block fenced with four backticks', '<sub>[p](test/readme/p.ts)</sub>\n````ts\nconst a: number = "";\n````\n', /fence it as ```ts/],
    ['a ts block fenced with tildes', '<sub>[p](test/readme/p.ts)</sub>\n~~~~ts\nconst a: number = "";\n~~~~\n', /fence it as ```ts/],
    ['a ts block in a blockquote', '> note:\n> ```ts\n> const a: number = "";\n> ```\n', /fence it as ```ts/],
    ['a ts block in a numbered list item', '1. ```ts\n   const a: number = "";\n   ```\n', /fence it as ```ts/],
    ['a ts block in a bullet list item', '- ```tsx\n  const a: number = "";\n  ```\n', /fence it as ```ts/],
    ['a ts block in a quoted list item', '> 2) ```typescript\n>    const a = 1;\n>    ```\n', /fence it as ```ts/],
    ['two blocks linking one prelude', '<sub>[p](test/readme/p.ts)</sub>\n```ts\n```\n<sub>[p](test/readme/p.ts)</sub>\n```ts\n```\n', /already linked/],
  ])('would fail CI on %s', (_what, readme, message) => {
    expect(() => readmeExamples(readme)).toThrow(message);
  });

  it('ends a block where GitHub ends it: a closing fence may carry trailing spaces or more backticks', () => {
    const readme = [
      '<sub>[a](test/readme/a.ts)</sub>', '```ts', 'const a = 1;', '```  ', 'text',
      '<sub>[b](test/readme/b.ts)</sub>', '```ts', 'const b = 2;', '`````', '',
    ].join('\n');
    expect(readmeExamples(readme).map((e) => [e.id, e.code])).toEqual([['a', 'const a = 1;'], ['b', 'const b = 2;']]);
  });

  it('has examples that type-check strictly, each with its prelude', () => {
    // Against the drizzle-orm this run resolves (scripts/test-drizzle1.sh: the 1.0 copy).
    const tsconfig = drizzleMajor === 1 ? 'tsconfig.drizzle1.json' : 'tsconfig.json';
    const config = ts.getParsedCommandLineOfConfigFile(`${ROOT}${tsconfig}`, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} })!;
    expect(config.options.strict).toBe(true);
    const program = ts.createProgram([...files.values()], { ...config.options, noEmit: true });
    const byFile = new Map([...files].map(([id, file]) => [file, examples.find((e) => e.id === id)!]));
    const problems = ts.getPreEmitDiagnostics(program).map((d) => describeDiagnostic(d, byFile));
    expect(problems).toEqual([]);
  });
});

/** A compiler message, placed at its README line when it is in a block. */
function describeDiagnostic(d: ts.Diagnostic, byFile: Map<string, ReadmeExample>): string {
  const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
  if (!d.file || d.start === undefined) return message;
  const { line } = d.file.getLineAndCharacterOfPosition(d.start);
  const example = byFile.get(d.file.fileName);
  if (example) return `README.md:${example.line + 1 + line} (example ${example.id}): ${message}`;
  return `${relative(ROOT, d.file.fileName)}:${line + 1}: ${message}`;
}

describe('Use it in service code', async () => {
  const t = await testDatabase({ migrated: false });
  let example: { buyWidget(customerId: string, key: string): Promise<unknown>; db: Database };

  beforeAll(async () => {
    await t.pool.query(`
      create table charges (id serial primary key, customer_id text not null, amount integer not null);
      create table stock (sku text primary key, quantity integer not null);
      insert into stock values ('widget', 2);`);
    example = await load('schema', { DATABASE_URL: t.url });
  });
  afterAll(() => example?.db.$client.end());

  it('creates idempotency_keys at start', async () => {
    expect(await count(t.pool, 'idempotency_keys')).toBe(0);
  });

  it('charges once per key and gives every later call the stored result', async () => {
    const first = await example.buyWidget('alice', 'w-1');
    expect(first).toEqual({ ok: true, chargeId: expect.any(Number) });
    expect(await example.buyWidget('alice', 'w-1')).toEqual(first);
    expect(await count(t.pool, 'charges', `customer_id = 'alice'`)).toBe(1);
  });

  it('makes concurrent duplicates wait for the first and get its result', async () => {
    const results = await Promise.all(Array.from({ length: 5 }, () => example.buyWidget('bob', 'w-2')));
    expect(new Set(results.map((r) => JSON.stringify(r))).size).toBe(1);
    expect(await count(t.pool, 'charges', `customer_id = 'bob'`)).toBe(1);
    expect(await count(t.pool, 'stock', `sku = 'widget' and quantity = 0`)).toBe(1);
  });

  it('stores a business refusal too: out of stock stays the answer for that key', async () => {
    expect(await example.buyWidget('carol', 'w-3')).toEqual({ ok: false, reason: 'out of stock' });
    await t.pool.query(`update stock set quantity = 5`);
    expect(await example.buyWidget('carol', 'w-3')).toEqual({ ok: false, reason: 'out of stock' });
    expect(await count(t.pool, 'charges', `customer_id = 'carol'`)).toBe(0);
  });
});

describe('the order examples (given a transaction, knowing a replay, SERIALIZABLE)', async () => {
  const t = await testDatabase({ migrated: true });
  const cart = { items: [{ sku: 'mug', quantity: 1 }] };
  let shop: { db: Database };

  beforeAll(async () => {
    await t.pool.query(`
      create table orders (id serial primary key, items jsonb not null, created_at timestamptz not null default now());
      create table audit_log (id serial primary key, event text not null);
      create table carts (user_id text primary key, order_id integer);
      insert into carts values ('alice', null);`);
    // The examples' prelude: its `db` is the one every example below uses.
    shop = await importWith('./shop.js', { DATABASE_URL: t.url });
  });
  afterAll(() => shop?.db.$client.end());

  /** What other sessions see of the "Given a transaction" example's writes. */
  const checkout = async () => ({
    keys: await count(t.pool, 'idempotency_keys', `scope = 'alice' and key = 'checkout-0001'`),
    orders: await count(t.pool, 'orders'),
    audits: await count(t.pool, 'audit_log', `event = 'checkout-attempt'`),
  });

  it('given a transaction: when your transaction fails after the call, your ROLLBACK forgets key, order and audit row', async () => {
    // The example's last statement, the cart update, fails: the whole transaction rolls back.
    await t.pool.query(`alter table carts add constraint no_order_yet check (order_id is null)`);
    try {
      await expect(runAgain('transaction')).rejects.toMatchObject({ cause: expect.objectContaining({ code: '23514' }) });
    } finally {
      await t.pool.query(`alter table carts drop constraint no_order_yet`);
    }
    expect(await checkout()).toEqual({ keys: 0, orders: 0, audits: 0 });
  });

  it('given a transaction: key, order and audit row become visible with your COMMIT, not before', async () => {
    // Hold the cart row, so that the example waits at its last statement, after the call returned.
    const holder = await t.pool.connect();
    try {
      await holder.query(`begin`);
      await holder.query(`select 1 from carts where user_id = 'alice' for update`);
      const run = runAgain('transaction');
      await waitForLockWaiters(t.pool, 1);
      expect(await checkout()).toEqual({ keys: 0, orders: 0, audits: 0 });
      await holder.query(`commit`);
      await run;
    } finally {
      await holder.query(`rollback`).catch(() => {});
      holder.release();
    }
    expect(await checkout()).toEqual({ keys: 1, orders: 1, audits: 1 });
    expect(await count(t.pool, 'idempotency_keys', `key = 'checkout-0001' and status = 'completed'`)).toBe(1);
    expect(await count(t.pool, 'carts', `user_id = 'alice' and order_id = (select id from orders)`)).toBe(1);
  });

  it('knowing a replay: says whether fn ran, and the stored order is the same either way', async () => {
    const replay = await load<{
      placeOrder(userId: string, key: string, cart: object): Promise<{ order: { id: number; createdAt: unknown }; replayed: boolean }>;
      storedOrder(userId: string, key: string, cart: object): Promise<unknown>;
    }>('replay', {});
    expect(await replay.storedOrder('bob', 'order-1', cart)).toBeUndefined();
    const first = await replay.placeOrder('bob', 'order-1', cart);
    expect(first.replayed).toBe(false);
    expect(first.order.createdAt).toEqual(expect.any(String)); // the stored JSON, on the first call too
    expect(await replay.placeOrder('bob', 'order-1', cart)).toEqual({ order: first.order, replayed: true });
    expect(await replay.storedOrder('bob', 'order-1', cart)).toEqual(first.order);
    // Another cart under the same key is another request: refused, never the first order.
    const otherCart = { items: [{ sku: 'mug', quantity: 9 }] };
    await expect(replay.placeOrder('bob', 'order-1', otherCart)).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    await expect(replay.storedOrder('bob', 'order-1', otherCart)).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await count(t.pool, 'orders')).toBe(2);
  });

  it('SERIALIZABLE: concurrent duplicates fail once the first commits, run the whole transaction again and get the one order', async () => {
    const { placeOrderSerializable } = await load<{ placeOrderSerializable(userId: string, key: string, cart: object): Promise<unknown> }>(
      'serializable',
      {},
    );
    // Every attempt is a transaction of its own, on a connection taken from the pool.
    let attempts = 0;
    const counted = () => void attempts++;
    shop.db.$client.on('acquire', counted);
    // Hold the first call inside createOrder until all four wait: one on the orders
    // table, three on the first's uncommitted key, each in its own snapshot.
    const holder = await t.pool.connect();
    let calls: Promise<unknown>[] = [];
    try {
      await holder.query(`begin`);
      await holder.query(`lock table orders in share mode`);
      calls = Array.from({ length: 4 }, () => placeOrderSerializable('carol', 'order-2', cart));
      await waitForLockWaiters(t.pool, 4);
      await holder.query(`commit`);
      const results = await Promise.all(calls);
      expect(new Set(results.map((r) => JSON.stringify(r))).size).toBe(1);
    } finally {
      await holder.query(`rollback`).catch(() => {});
      holder.release();
      await Promise.allSettled(calls);
      shop.db.$client.off('acquire', counted);
    }
    expect(attempts).toBeGreaterThanOrEqual(4 + 3); // the three duplicates each ran again, and then replayed
    expect(await count(t.pool, 'orders')).toBe(3);
  });
});

describe('On node-postgres: named statements and pipeline mode, by default', async () => {
  const t = await testDatabase({ migrated: true });
  let example: { charge: unknown; again: unknown; db: Database; plainDb: Database };

  beforeAll(async () => {
    await t.pool.query(`create table charges (id serial primary key, customer_id text not null, amount integer not null)`);
    example = await load('pipeline', { DATABASE_URL: t.url });
  });
  afterAll(() => Promise.all([example?.db.$client.end(), example?.plainDb.$client.end()]));

  it('charges once and stores the charge; the same key on the plain pool replays it', async () => {
    expect(example.charge).toEqual({ id: expect.any(Number), customerId: 'alice', amount: 1999 });
    expect(example.again).toEqual(example.charge);
    const { rows } = await t.pool.query(`select scope, status, response from idempotency_keys where key = 'order-42-payment'`);
    expect(rows).toEqual([{ scope: 'alice', status: 'completed', response: { value: example.charge } }]);
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  const prepared = (pool: pg.Pool) =>
    pool.query<{ statement: string }>(`select statement from pg_prepared_statements where name like 'drizzle\\_idempotency\\_%'`);

  it("leaves the library's statements prepared on the connection of the defaults, and gives the connection back out of pipeline mode", async () => {
    const pool = example.db.$client;
    expect(pool.options.pipeline).toBeUndefined(); // no switch set: the defaults
    expect(pool.totalCount).toBe(1); // the one connection of the call: what follows runs on it
    const { rows } = await prepared(pool);
    expect(rows.length).toBeGreaterThanOrEqual(2); // the claim and the store, at least
    expect(rows.every((r) => r.statement.includes('idempotency_keys'))).toBe(true);
    const client = await pool.connect();
    expect((client as unknown as { pipeline: boolean }).pipeline).toBe(false);
    client.release();
  });

  it('prepares nothing with both switched off', async () => {
    const pool = example.plainDb.$client;
    expect(pool.options).toMatchObject({ pipeline: false });
    expect((await prepared(pool)).rows).toEqual([]);
  });
});

describe('Messages: a consumer that runs once', async () => {
  const t = await testDatabase({ migrated: true });
  type Outcome = { value: { id: number; customerId: string; amount: number }; replayed: boolean };
  let example: { sqsFirst: Outcome; sqsAgain: Outcome; kafkaBoth: Outcome[]; batch: Outcome[]; db: Database };

  beforeAll(async () => {
    await t.pool.query(`create table charges (id serial primary key, customer_id text not null, amount integer not null)`);
    example = await load('messages', { DATABASE_URL: t.url });
  });
  afterAll(() => example?.db.$client.end());

  it('charges once per message, replays redeliveries, and runs a message twice in one batch once', async () => {
    expect(example.sqsFirst).toEqual({ value: { id: expect.any(Number), customerId: 'alice', amount: 1999 }, replayed: false });
    expect(example.sqsAgain).toEqual({ value: example.sqsFirst.value, replayed: true });
    expect(example.kafkaBoth.map((o) => [o.value.customerId, o.replayed])).toEqual([['bob', false], ['bob', true]]);
    expect(example.batch.map((o) => [o.value.customerId, o.replayed])).toEqual([['carol', false], ['carol', true]]);
    const { rows } = await t.pool.query(`select customer_id, count(*)::int as n from charges group by customer_id order by customer_id`);
    expect(rows).toEqual([{ customer_id: 'alice', n: 1 }, { customer_id: 'bob', n: 1 }, { customer_id: 'carol', n: 1 }]);
    expect((await t.pool.query(`select scope, key from idempotency_keys order by scope, key`)).rows).toEqual([
      { scope: 'kafka:payments', key: '0/4711' },
      { scope: 'sqs:payments', key: '5fea7756-0ea4-451a-a703-a558b933e274' },
      { scope: 'sqs:payments', key: 'e1f3c9a2-7b4d-4c1e-9f00-2b6a8d5c4e10' },
    ]);
  });
});

describe('A transactional outbox on pg-boss', async () => {
  const t = await testDatabase({ migrated: true });
  let example: { signUp(key: string, email: string): Promise<{ email: string; jobId: string | null }>; boss: import('pg-boss'); db: Database };
  let mail: MailApi;

  beforeAll(async () => {
    await t.pool.query(`create table signups (email text primary key); create table email_log (id serial primary key, job_id text not null, "to" text not null)`);
    mail = await startMailApi();
    example = await load('outbox', { DATABASE_URL: t.url, MAIL_API_URL: mail.url });
  });
  afterAll(async () => {
    await example?.boss.stop({ graceful: false, wait: true });
    await example?.db.$client.end();
    await mail?.close();
  });

  it('enqueues one job per signup, however often the signup is retried, and the e-mail goes out once', async () => {
    const first = await example.signUp('signup-1', 'ann@example.test');
    expect(await example.signUp('signup-1', 'ann@example.test')).toEqual(first);
    expect(await count(t.pool, 'pgboss.job', `name = 'welcome-email'`)).toBe(1);
    expect(await jobState(example.boss, 'welcome-email', first.jobId!)).toBe('completed');
    expect(await count(t.pool, 'email_log')).toBe(1);
    expect(mail.deliveries()).toEqual([{ key: expect.stringMatching(/^di-/), to: 'ann@example.test', subject: 'Welcome to the shop' }]);
  });
});

describe('Payments through a gateway: the full example', async () => {
  const t = await testDatabase({ migrated: true });
  let example: { app: import('express').Express; db: Database; completer: { stop(): Promise<void> } };
  let gateway: Gateway;
  let server: Server;
  let url: string;

  beforeAll(async () => {
    await t.pool.query(`create table payments (id uuid primary key default gen_random_uuid(), user_id text not null, amount integer not null,
      currency text not null, status text not null, charge_id text)`);
    await migrateGateway(t.db);
    gateway = await startGateway(t.db);
    example = await load('gateway-payment', { DATABASE_URL: t.url, GATEWAY_URL: gateway.url });
    server = example.app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server?.close();
    await example?.completer.stop();
    await example?.db.$client.end();
    await gateway?.close();
  });

  const pay = (key: string, amount: number) =>
    fetch(`${url}/payments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key, 'x-user-id': 'ann' },
      body: JSON.stringify({ amount, currency: 'EUR' }),
    });

  it('charges once though the gateway drops its answer: reconcile finds the charge; the retry replays the 201', async () => {
    await gatewayClient(gateway.url).setFaults({ dropAfterCharge: 1 });
    const first = await pay('pay-1', 1250);
    await gatewayClient(gateway.url).setFaults({ dropAfterCharge: 0 });
    const body = (await first.json()) as { id: string; status: string; chargeId: string };
    expect(first.status).toBe(201);
    expect(body).toMatchObject({ status: 'paid', chargeId: expect.stringMatching(/^ch_/) });
    const again = await pay('pay-1', 1250);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual(body);
    const charges = (await gatewayClient(gateway.url).ledger()).filter((c) => c.reference === body.id);
    expect(charges).toEqual([expect.objectContaining({ id: body.chargeId, status: 'succeeded' })]);
    expect(gateway.stats().dropped).toBe(1);
  });

  it('answers a decline with a stored 402 and marks the payment declined', async () => {
    const first = await pay('pay-2', 5_000_000);
    expect(first.status).toBe(402);
    expect(await first.json()).toEqual({ code: 'PAYMENT_DECLINED', reason: 'card_declined' });
    expect((await pay('pay-2', 5_000_000)).headers.get('idempotent-replayed')).toBe('true');
    expect(await count(t.pool, 'payments', `status = 'declined'`)).toBe(1);
  });
});

describe('Migrations', async () => {
  const regclass = async (pool: pg.Pool, name: string) =>
    (await pool.query<{ found: boolean }>(`select to_regclass($1) is not null as found`, [name])).rows[0]!.found;

  describe('1. migrate()', async () => {
    const t = await testDatabase({ migrated: false });
    let example: { db: Database };
    beforeAll(async () => {
      example = await load('migrate', { DATABASE_URL: t.url });
    });
    afterAll(() => example?.db.$client.end());

    it('creates idempotency_keys in public and in the schema given', async () => {
      expect(await regclass(t.pool, 'public.idempotency_keys')).toBe(true);
      expect(await regclass(t.pool, 'billing.idempotency_keys')).toBe(true);
      expect(await withIdempotency(example.db, 'k', async () => 'in billing', { schema: 'billing' })).toBe('in billing');
    });
  });

  // The block for the drizzle-orm this run is on works; the other one's folder is refused by its migrator.
  const [own, other] = drizzleMajor === 1 ? ['migrations-folder-drizzle1', 'migrations-folder'] : ['migrations-folder', 'migrations-folder-drizzle1'];

  describe(`2. migrationsFolder with your own migrator (drizzle-orm ${drizzleMajor === 1 ? '1.0' : '0.44+'}: the ${own} block)`, async () => {
    const t = await testDatabase({ migrated: false });
    let example: { db: Database };
    beforeAll(async () => {
      example = await load(own, { DATABASE_URL: t.url });
    });
    afterAll(() => example?.db.$client.end());

    it('creates the table the library uses, and then migrate() refuses it, as the README says', async () => {
      expect(await regclass(t.pool, 'public.__idempotency_migrations')).toBe(false); // drizzle keeps it in schema "drizzle"
      expect(await regclass(t.pool, 'drizzle.__idempotency_migrations')).toBe(true);
      expect(await withIdempotency(example.db, 'k', async () => 'stored')).toBe('stored');
      await expect(migrate(example.db)).rejects.toBeInstanceOf(IdempotencyMigrationConflictError);
    });

    it(`fails with the ${other} block, whose folder has the other layout, creating no table`, async () => {
      const elsewhere = await testDatabase({ migrated: false });
      await expect(load(other, { DATABASE_URL: elsewhere.url })).rejects.toThrow();
      expect(await regclass(elsewhere.pool, 'public.idempotency_keys')).toBe(false);
    });
  });

  describe('3. your own drizzle-kit schema (generate and migrate run from the packed package in scripts/check-package.sh)', () => {
    it('exports the table, in public or in the schema given', async () => {
      const plain = await load<{ idempotencyKeys: PgTable }>('drizzle-kit-schema', {});
      const billing = await load<{ idempotencyKeys: PgTable; billing: PgSchema }>('drizzle-kit-schema-billing', {});
      expect(getTableConfig(plain.idempotencyKeys)).toMatchObject({ name: 'idempotency_keys', schema: undefined });
      expect(getTableConfig(billing.idempotencyKeys)).toMatchObject({ name: 'idempotency_keys', schema: 'billing' });
      // drizzle-kit writes CREATE SCHEMA only for schemas the file exports.
      expect(is(billing.billing, PgSchema) && billing.billing.schemaName).toBe('billing');
    });
  });
});

describe('HTTP: the Express server and the fetchWithRetry client', async () => {
  const t = await testDatabase({ migrated: false });
  let example: { server: Server; db: Database };
  let url: string;

  beforeAll(async () => {
    await t.pool.query(`
      create table products (sku text primary key, stock integer not null);
      create table payments (id serial primary key, customer_id text not null, sku text not null, amount integer not null);
      insert into products values ('mug', 2), ('lamp', 0);`);
    example = await load('express-server', { DATABASE_URL: t.url, PORT: '0' });
    if (!example.server.listening) await once(example.server, 'listening');
    url = `http://127.0.0.1:${(example.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    example?.server.close();
    await example?.db.$client.end();
  });

  const pay = (key: string | undefined, body: object, customer: string | null = 'alice') =>
    fetch(`${url}/payments`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(key === undefined ? {} : { 'idempotency-key': key }),
        ...(customer === null ? {} : { authorization: `Bearer ${customer}` }),
      },
      body: JSON.stringify(body),
    });

  it('creates a payment once; the retry gets the same answer, marked as a replay', async () => {
    const first = await pay('p-1', { sku: 'mug', amount: 1200 });
    const body = (await first.json()) as { id: number };
    expect(first.status).toBe(201);
    expect(body).toEqual({ id: expect.any(Number), customerId: 'alice', sku: 'mug', amount: 1200 });
    expect(first.headers.get('location')).toBe(`/payments/${body.id}`);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const retry = await pay('p-1', { sku: 'mug', amount: 1200 });
    expect(retry.status).toBe(201);
    expect(await retry.json()).toEqual(body);
    expect(retry.headers.get('location')).toBe(`/payments/${body.id}`);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await count(t.pool, 'payments')).toBe(1);
    expect(await count(t.pool, 'products', `sku = 'mug' and stock = 1`)).toBe(1);
  });

  it('stores out of stock (409) as a final answer, and refuses the same key for another request (422)', async () => {
    expect((await pay('p-2', { sku: 'lamp', amount: 5 })).status).toBe(409);
    await t.pool.query(`update products set stock = 1 where sku = 'lamp'`);
    const again = await pay('p-2', { sku: 'lamp', amount: 5 });
    expect([again.status, again.headers.get('idempotent-replayed')]).toEqual([409, 'true']);
    const reused = await pay('p-1', { sku: 'mug', amount: 9999 });
    expect(reused.status).toBe(422);
    expect(await reused.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
  });

  it('scopes keys to the customer, and needs a key and an authenticated customer', async () => {
    const bob = await pay('p-1', { sku: 'mug', amount: 1200 }, 'bob');
    expect(bob.status).toBe(201);
    expect(await bob.json()).toMatchObject({ customerId: 'bob' });
    expect((await pay(undefined, { sku: 'mug', amount: 1 })).status).toBe(400);
    expect((await pay('p-3', { sku: 'mug', amount: 1 }, null)).status).toBe(401);
  });

  it('the client pays through fetchWithRetry, and its retry with the same key is a replay', async () => {
    await t.pool.query(`update products set stock = 5 where sku = 'mug'`);
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      const { res } = await load<{ res: RetriedResponse }>('client', { SHOP_URL: url, SHOP_TOKEN: 'carol' });
      expect([res.status, res.replayed, res.attempts]).toEqual([201, false, 1]);
      expect(log).toHaveBeenCalledWith(201, expect.objectContaining({ customerId: 'carol', sku: 'mug', amount: 1200 }), '(ran now)');
      const retry = await fetchWithRetry(`${url}/payments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer carol' },
        body: JSON.stringify({ sku: 'mug', amount: 1200 }),
      }, { idempotencyKey: res.idempotencyKey });
      expect([retry.status, retry.replayed]).toEqual([201, true]);
      expect(await count(t.pool, 'payments', `customer_id = 'carol'`)).toBe(1);
    } finally {
      log.mockRestore();
    }
  });
});

describe('HTTP: the Fastify and Hono examples', () => {
  const payments = `
    create table payments (id serial primary key, customer_id text not null, sku text not null, amount integer not null)`;
  const payment = (url: string, key: string, body: object, customer: string | null = 'alice') =>
    fetch(`${url}/payments`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'idempotency-key': key,
        ...(customer === null ? {} : { authorization: `Bearer ${customer}` }),
      },
      body: JSON.stringify(body),
    });

  /** The shared part of both examples: one payment per key, replayed with its location, 422 on another body, 401 unauthenticated. */
  async function paysOnce(url: string, pool: pg.Pool) {
    const first = await payment(url, 'f-1', { sku: 'mug', amount: 1200 });
    const body = (await first.json()) as { id: number };
    const retry = await payment(url, 'f-1', { sku: 'mug', amount: 1200 });
    expect(first.status).toBe(201);
    expect(body).toEqual({ id: expect.any(Number), customerId: 'alice', sku: 'mug', amount: 1200 });
    expect([retry.status, retry.headers.get('idempotent-replayed'), retry.headers.get('location')]).toEqual([201, 'true', `/payments/${body.id}`]);
    expect(await retry.json()).toEqual(body);
    expect((await payment(url, 'f-1', { sku: 'mug', amount: 9 })).status).toBe(422);
    expect((await payment(url, 'f-2', { sku: 'mug', amount: 1 }, null)).status).toBe(401);
    expect(await count(pool, 'payments')).toBe(1);
    return { first, retry };
  }

  describe('Fastify', async () => {
    const t = await testDatabase({ migrated: false });
    let example: { app: { server: Server; close(): Promise<void> }; db: Database };
    beforeAll(async () => {
      await t.pool.query(payments);
      example = await load('fastify-server', { DATABASE_URL: t.url, PORT: '0' });
    });
    afterAll(async () => {
      await example?.app.close();
      await example?.db.$client.end();
    });

    it('creates a payment once, replays it with Idempotency-Key-Expires, and refuses another body and an unauthenticated caller', async () => {
      const url = `http://127.0.0.1:${(example.app.server.address() as AddressInfo).port}`;
      const { first, retry } = await paysOnce(url, t.pool);
      const { rows } = await t.pool.query<{ at: Date }>(`select date_trunc('second', expires_at) as at from idempotency_keys where key = 'f-1'`);
      expect(first.headers.get('idempotency-key-expires')).toBe(rows[0]!.at.toUTCString());
      expect(retry.headers.get('idempotency-key-expires')).toBe(rows[0]!.at.toUTCString());
    });
  });

  describe('Hono', async () => {
    const t = await testDatabase({ migrated: false });
    let example: { app: { fetch: (request: Request) => Response | Promise<Response> }; db: Database };
    let server: Listening;
    beforeAll(async () => {
      await t.pool.query(payments);
      example = await load('hono-server', { DATABASE_URL: t.url });
      server = await listen(webListener(example.app.fetch));
    });
    afterAll(async () => {
      await server?.close();
      await example?.db.$client.end();
    });

    it('creates a payment once, replays it, and refuses another body and an unauthenticated caller', async () => {
      const { first } = await paysOnce(server.url, t.pool);
      expect(first.headers.get('idempotency-key-expires')).toBeNull();
    });
  });
});

describe('Operations: startSweeper', async () => {
  const t = await testDatabase({ migrated: true });
  /** Whether a TCP connection to the port is accepted (a new one, not fetch's kept-alive one). */
  const accepts = (port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });

  it('shuts down on SIGTERM, with a sweep running and a keep-alive connection open: it ends the sweep between batches, and the process exits 0 at once', async () => {
    // Two and a half batches of expired keys (a batch is 1000 rows).
    await t.pool.query(`
      insert into idempotency_keys (key, status, response, completed_at, expires_at)
      select 'expired-' || n, 'completed', '{"value": 1}', now() - interval '2 days', now() - interval '1 day'
      from generate_series(1, 2500) as n`);
    // Hold the table, so that the sweep the example starts at once stays in its first batch until we let go.
    const holder = await t.pool.connect();
    await holder.query(`begin`);
    await holder.query(`lock table idempotency_keys in share mode`);
    const child = spawn(process.execPath, ['--import', 'tsx', `${ROOT}test/readme/run-example.ts`, files.get('sweeper')!], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: t.url, PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    let out = '';
    let err = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const bound = setTimeout(() => child.kill('SIGKILL'), 30_000);
    try {
      while (!/ready (\d+)\n/.test(out)) await Promise.race([once(child.stdout!, 'data'), exited]);
      const port = Number(/ready (\d+)\n/.exec(out)![1]);
      await waitForLockWaiters(t.pool, 1); // the sweep's first batch
      // A keep-alive connection, idle once answered, as a browser or load balancer leaves it.
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      child.kill('SIGTERM');
      // The server stops listening first; give the handler ample time to get to the sweeper, then let the batch finish.
      while (await accepts(port)) await sleep(20);
      await sleep(500);
      await holder.query(`commit`);
      const released = performance.now();
      const [code, signal] = await exited;
      // pg closes idle connections after 10 s: an exit within 4 s means the handler ended the pool.
      expect(performance.now() - released).toBeLessThan(4_000);
      expect({ code, signal }).toEqual({ code: 0, signal: null });
    } finally {
      clearTimeout(bound);
      await holder.query(`rollback`).catch(() => {});
      holder.release();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    // The running sweep stopped after its batch, reported it, and nothing failed.
    expect(out).toMatch(/idempotency keys swept \{ deleted: 1000,/);
    expect(err).toBe('');
    expect(await count(t.pool, 'idempotency_keys')).toBe(1500);
  });
});

describe('Operations: inspectKey and evictKey from code', async () => {
  const t = await testDatabase({ migrated: true });
  let desk: { db: Database; explainKey(customer: string, key: string): Promise<string>; releaseKey(customer: string, key: string): Promise<string> };

  beforeAll(async () => {
    desk = await load('support-desk', { DATABASE_URL: t.url });
  });
  afterAll(() => desk?.db.$client.end());

  it('explains a completed, an unknown and an in-flight key, releases the completed one and refuses the in-flight one', async () => {
    await withIdempotency(t.db, 'pay-1', async () => ({ paid: true }), { scope: 'alice' });
    expect(await desk.explainKey('alice', 'pay-1')).toMatch(/^completed at \S+: a retry gets the same answer$/);
    expect(await desk.explainKey('bob', 'pay-1')).toBe('unknown key: a retry runs as a new request');

    // A call inside fn, its claim not committed yet.
    const entered = deferred();
    const gate = deferred();
    const call = withIdempotency(t.db, 'pay-2', async () => (entered.resolve(), await gate.promise, 1), { scope: 'alice' });
    await entered.promise;
    expect(await desk.explainKey('alice', 'pay-2')).toBe('in flight (claimed): a retry waits or gets 409');
    await expect(desk.releaseKey('alice', 'pay-2')).rejects.toBeInstanceOf(IdempotencyInFlightError);
    gate.resolve();
    await call;

    expect(await desk.releaseKey('alice', 'pay-1')).toBe('removed a completed key');
    expect(await desk.releaseKey('alice', 'pay-1')).toBe('nothing to remove');
    expect(await count(t.pool, 'idempotency_keys')).toBe(1);
  });
});

describe('Telemetry: diagnostics_channel and OpenTelemetry', async () => {
  const t = await testDatabase({ migrated: true });
  type Logged = { level: string; fields: Record<string, unknown>; message: string }[];
  type Otel = {
    charge(customerId: string, key: string, amount: number): Promise<{ id: number }>;
    stopInstrumentation(): void;
  };
  let prelude: {
    db: Database;
    spans: import('@opentelemetry/sdk-trace-base').InMemorySpanExporter;
    metricReader: import('@opentelemetry/sdk-metrics').MetricReader;
  };
  let otel: Otel;
  let logged: Logged;

  beforeAll(async () => {
    await t.pool.query(`create table charges (id serial primary key, customer_id text not null, amount integer not null)`);
    prelude = await importWith('./otel.js', { DATABASE_URL: t.url });
    otel = await load<Otel>('otel', {});
    ({ logged } = await importWith<{ logged: Logged }>('./telemetry-log.js', {}));
    await load('telemetry-log', {});
  });
  afterAll(async () => {
    otel?.stopInstrumentation();
    await prelude?.db.$client.end();
  });

  it('logs a rolled-back call by hashes, phase and error name, never the key, scope or message', async () => {
    await expect(
      withIdempotency(prelude.db, 'order-42', async () => {
        throw new TypeError('card of alice declined');
      }, { scope: 'alice' }),
    ).rejects.toBeInstanceOf(TypeError);
    const entry = logged.find((e) => e.message === 'idempotent call rolled back' && e.fields.keyHash === telemetryHash('order-42'));
    expect(entry).toEqual({
      level: 'warn',
      fields: { scopeHash: telemetryHash('alice'), keyHash: telemetryHash('order-42'), phase: 'fn', error: 'TypeError' },
      message: 'idempotent call rolled back',
    });
    expect(JSON.stringify(logged)).not.toMatch(/alice|order-42/);
  });

  it('makes a span per call with its outcome and counts the calls; charges once', async () => {
    const first = await otel.charge('bob', 'charge-1', 700);
    expect(await otel.charge('bob', 'charge-1', 700)).toEqual(first);
    const calls = prelude.spans.getFinishedSpans().filter((s) => s.attributes['idempotency.key_hash'] === telemetryHash('charge-1'));
    expect(calls.map((s) => [s.name, s.attributes['idempotency.outcome'], s.attributes['idempotency.scope_hash']])).toEqual([
      ['idempotency.call', 'executed', telemetryHash('bob')],
      ['idempotency.call', 'replayed', telemetryHash('bob')],
    ]);
    const { resourceMetrics } = await prelude.metricReader.collect();
    const counter = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === 'idempotency.calls');
    const byOutcome = Object.fromEntries((counter?.dataPoints ?? []).map((p) => [p.attributes['idempotency.outcome'], p.value]));
    expect(byOutcome).toMatchObject({ executed: 1, replayed: 1 });
    expect(await count(t.pool, 'charges', `customer_id = 'bob'`)).toBe(1);
  });
});
