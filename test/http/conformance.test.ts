// One specification, three adapters: every row of the README's status table,
// the replay headers, rollback of non-final answers, the answer only after
// COMMIT, concurrent duplicates and the expiry header, for Express, Fastify
// and the Web-standard handler (served through Hono); then the same for
// leased workflows (idempotentWorkflow) calling a gateway of their own.
// Real HTTP servers, real PostgreSQL; each test ends with an audit of what
// the database holds.
import { once } from 'node:events';
import { connect, type AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import express, { type ErrorRequestHandler } from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idempotent as expressIdempotent, idempotentWorkflow as expressWorkflow } from '../../src/express.js';
import { idempotent as fastifyIdempotent, idempotentWorkflow as fastifyWorkflow } from '../../src/fastify.js';
import { idempotent as webIdempotent, idempotentWorkflow as webWorkflow } from '../../src/web.js';
import { defineWorkflow, type Duration, type Workflow } from '../../src/index.js';
import type { WorkflowRouteOptions } from '../../src/http/workflow-options.js';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import type { RouteOptions } from '../../src/http/options.js';
import type { IdempotentResponse } from '../../src/http/response.js';
import { waitForLockWaiters } from '../support/activity.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge, keyRows } from '../support/fixtures.js';
import { listen, rawRequest } from '../support/http.js';
import { webListener } from '../support/web-server.js';

const t = await testDatabase();
await createBusinessTables(t.pool);
await t.pool.query(`
  create table ledger (entry int, constraint ledger_entry_unique unique (entry) deferrable initially deferred);
  -- Slows every COMMIT that recorded a slow-commit charge: an answer sent before COMMIT would arrive while the charge is still invisible.
  create function slow_commit() returns trigger language plpgsql as $$ begin perform pg_sleep(0.3); return null; end $$;
  create constraint trigger slow_commit after insert on charges deferrable initially deferred
    for each row when (new.ref like '%slow-commit%') execute function slow_commit();
`);

/** What every adapter's handler gets, whatever its framework calls it. */
interface Input {
  body: unknown;
  customer: string | undefined;
}
type Run = (input: Input, tx: IdempotencyDatabase) => Promise<IdempotentResponse>;
interface RouteSpec {
  path: string;
  run: Run;
  options?: Omit<RouteOptions<never>, 'scope' | 'fingerprint'>;
  /** The scope is the x-customer header, with no fallback: a request without it has no scope. */
  strictScope?: boolean;
}
/** What every workflow gets as its input: the request's JSON body. */
type PaymentInput = { ref: string; amount: number };
interface WorkflowSpec {
  path: string;
  workflow: Workflow<PaymentInput, IdempotentResponse>;
  options?: Omit<WorkflowRouteOptions<never, PaymentInput>, 'scope' | 'input' | 'onError' | 'fingerprint'>;
}
interface Adapter {
  name: string;
  /** Serves the routes on 127.0.0.1 for every method; returns the base URL. */
  serve(db: NodePgDatabase, routes: RouteSpec[]): Promise<string>;
  /** Serves the workflow routes on 127.0.0.1 for POST, scoped by x-customer; returns the base URL. */
  serveWorkflows(db: NodePgDatabase, routes: WorkflowSpec[]): Promise<string>;
}

/** What the workflow routes reported to onError (the client got a 5xx for each), by path and key. */
const reported: { key: string | undefined; error: unknown }[] = [];
const workflowOptions = <TReq>(spec: WorkflowSpec, body: (req: TReq) => unknown, customer: (req: TReq) => string | undefined, key: (req: TReq) => string | undefined) => ({
  ...spec.options,
  scope: (req: TReq) => customer(req) ?? 'anonymous',
  input: (req: TReq) => {
    const input = body(req) as PaymentInput;
    if (typeof input.amount !== 'number') throw new Error('amount is required');
    return input;
  },
  onError: (error: unknown, req: TReq) => void reported.push({ key: key(req), error }),
});

const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => Promise.all(closers.map((close) => close())));
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];
const scopeOf = (spec: RouteSpec, customer: string | undefined) => (spec.strictScope ? (customer as string) : (customer ?? 'anonymous'));

const adapters: Adapter[] = [
  {
    name: 'express',
    async serve(db, routes) {
      const app = express();
      app.use(express.json());
      for (const spec of routes) {
        app.all(
          spec.path,
          expressIdempotent(db, (req, tx) => spec.run({ body: req.body, customer: req.get('x-customer') }, tx), {
            ...spec.options,
            scope: (req) => scopeOf(spec, req.get('x-customer')),
          }),
        );
      }
      const onError: ErrorRequestHandler = (error: Error, _req, res, _next) => {
        res.status(500).json({ error: error.message });
      };
      app.use(onError);
      const server = await listen(app);
      closers.push(() => server.close());
      return server.url;
    },
    async serveWorkflows(db, routes) {
      const app = express();
      app.use(express.json());
      for (const spec of routes) {
        app.post(spec.path, expressWorkflow(db, spec.workflow, workflowOptions(spec, (req) => req.body, (req) => req.get('x-customer'), (req) => req.get('idempotency-key'))));
      }
      app.use(((error: Error, _req, res, _next) => void res.status(500).json({ error: error.message })) satisfies ErrorRequestHandler);
      const server = await listen(app);
      closers.push(() => server.close());
      return server.url;
    },
  },
  {
    name: 'fastify',
    async serve(db, routes) {
      const app = Fastify();
      app.setErrorHandler((error: Error & { statusCode?: number }, _req, reply) => reply.code(error.statusCode ?? 500).send({ error: error.message }));
      for (const spec of routes) {
        const customer = (headers: Record<string, string | string[] | undefined>) => headers['x-customer'] as string | undefined;
        app.route({
          method: METHODS,
          url: spec.path,
          ...(spec.options?.maxBodyBytes === undefined ? {} : { bodyLimit: spec.options.maxBodyBytes }),
          handler: fastifyIdempotent(db, (req, tx) => spec.run({ body: req.body, customer: customer(req.headers) }, tx), {
            ...spec.options,
            scope: (req) => scopeOf(spec, customer(req.headers)),
          }),
        });
      }
      await app.listen({ port: 0, host: '127.0.0.1' });
      closers.push(() => app.close());
      return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    },
    async serveWorkflows(db, routes) {
      const app = Fastify();
      app.setErrorHandler((error: Error, _req, reply) => reply.code(500).send({ error: error.message }));
      const header = (req: { headers: Record<string, string | string[] | undefined> }, name: string) => req.headers[name] as string | undefined;
      for (const spec of routes) {
        app.post(spec.path, fastifyWorkflow(db, spec.workflow, workflowOptions(spec, (req) => req.body, (req) => header(req, 'x-customer'), (req) => header(req, 'idempotency-key'))));
      }
      await app.listen({ port: 0, host: '127.0.0.1' });
      closers.push(() => app.close());
      return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    },
  },
  {
    name: 'hono',
    async serve(db, routes) {
      const app = new Hono();
      app.onError((error, c) => c.json({ error: error.message }, 500));
      for (const spec of routes) {
        const customer = (request: Request) => request.headers.get('x-customer') ?? undefined;
        const handle = webIdempotent(db, (req, tx) => spec.run({ body: req.body, customer: customer(req.request) }, tx), {
          ...spec.options,
          scope: (req) => scopeOf(spec, customer(req.request)),
        });
        app.on(METHODS, spec.path, (c) => handle(c.req.raw));
      }
      const server = await listen(webListener(app.fetch));
      closers.push(() => server.close());
      return server.url;
    },
    async serveWorkflows(db, routes) {
      const app = new Hono();
      app.onError((error, c) => c.json({ error: error.message }, 500));
      for (const spec of routes) {
        const header = (req: { request: Request }, name: string) => req.request.headers.get(name) ?? undefined;
        const handle = webWorkflow(db, spec.workflow, workflowOptions(spec, (req) => req.body, (req) => header(req, 'x-customer'), (req) => header(req, 'idempotency-key')));
        app.post(spec.path, (c) => handle(c.req.raw));
      }
      const server = await listen(webListener(app.fetch));
      closers.push(() => server.close());
      return server.url;
    },
  },
];

// Test hooks, by charge ref: entered when the handler has written, and what it then waits for.
const entered = new Map<string, () => void>();
const holds = new Map<string, Promise<void>>();
const calls = new Map<string, number>();

/** Decrements stock and records a charge; the answer carries a header that is stored and two that are not. */
const payment: Run = async ({ body }, tx) => {
  const { amount, sku, ref } = body as { amount: number; sku: string; ref: string };
  const stock = (await tx.execute(sql`select quantity from stock where sku = ${sku} for update`)) as unknown as { rows: { quantity: number }[] };
  const quantity = stock.rows[0]?.quantity;
  if (quantity === undefined) return { status: 404, body: { error: 'unknown_sku' } };
  await tx.execute(sql`update stock set quantity = quantity - 1 where sku = ${sku}`);
  const charge = await insertCharge(tx, ref, amount);
  entered.get(ref)?.();
  await holds.get(ref);
  return {
    status: 201,
    body: { id: charge.id, amount, sku },
    headers: { location: `/payments/${charge.id}`, 'set-cookie': 'session=first-caller', 'x-charge-id': String(charge.id) },
  };
};

/** Records a charge, then fails the n-th call as `fail[n-1]` says (a status, or a throw); later calls answer 201. */
const flaky: Run = async ({ body }, tx) => {
  const { ref, fail } = body as { ref: string; fail: (number | 'throw')[] };
  const n = (calls.get(ref) ?? 0) + 1;
  calls.set(ref, n);
  await insertCharge(tx, ref, 1);
  const failure = fail[n - 1];
  if (failure === 'throw') throw new Error('card network timeout');
  if (failure !== undefined) return { status: failure, body: { error: `failed with ${failure}` } };
  return { status: 201, body: { ref, call: n } };
};

const routes: RouteSpec[] = [
  { path: '/payments', run: payment },
  { path: '/payments-reject', run: payment, options: { onInFlight: 'reject', retryAfter: 2 } },
  { path: '/payments-expiring', run: payment, options: { expiryHeader: true, ttl: '1h' } },
  { path: '/flaky', run: flaky },
  {
    path: '/ledger',
    run: async (_input, tx) => {
      // A deferred constraint is checked at COMMIT: the handler succeeds, the commit does not.
      await tx.execute(sql`insert into ledger (entry) values (1), (1)`);
      return { status: 201, body: { ok: true } };
    },
  },
  {
    path: '/unstorable',
    run: async ({ body }, tx) => {
      await insertCharge(tx, (body as { ref: string }).ref, 1);
      return { status: 201, body: { amount: 10n } };
    },
  },
  { path: '/strict', run: flaky, strictScope: true },
  {
    path: '/csv',
    run: async () => ({ status: 200, body: 'sku,qty\nmug,1\n', headers: { 'content-type': 'text/csv', 'content-length': '1' } }),
  },
  {
    path: '/no-content',
    run: async () => ({ status: 204, body: { ignored: true }, headers: { 'content-type': 'application/json', location: '/somewhere' } }),
  },
  {
    // A handler that forwards an upstream answer's headers, the library's own among them.
    path: '/forwarding',
    run: async () => ({
      status: 201,
      body: { forwarded: true },
      headers: { 'idempotent-replayed': 'true', 'idempotency-key-expires': 'Fri, 01 Jan 2100 00:00:00 GMT', 'x-upstream': 'yes' },
    }),
  },
  { path: '/small', run: async (_input, tx) => ({ status: 201, body: await insertCharge(tx, 'small', 1) }), options: { maxBodyBytes: 1024 } },
];
/** Under REPEATABLE READ with no retries: a duplicate parked behind the first's claim fails once the first commits. */
const repeatableRead: RouteSpec[] = [
  { path: '/payments', run: payment, options: { transaction: { isolationLevel: 'repeatable read' }, serializationRetries: 0 } },
];

const post = (body: unknown, headers: Record<string, string> = {}, method = 'POST'): RequestInit => ({
  method,
  headers: { 'content-type': 'application/json', 'x-customer': 'alice', ...headers },
  body: JSON.stringify(body),
});
const chargesFor = (ref: string) => count(t.pool, 'charges', 'ref = $1', [ref]);
const keysFor = async (key: string) => (await keyRows(t.pool)).filter((k) => k.key === key);
const stockOf = async (sku: string) => (await t.pool.query<{ quantity: number }>('select quantity from stock where sku = $1', [sku])).rows[0]?.quantity;
const stockUp = (sku: string, quantity: number) => t.pool.query('insert into stock (sku, quantity) values ($1, $2)', [sku, quantity]);

describe.each(adapters)('the $name adapter', (adapter) => {
  const { name } = adapter;
  let url: string;
  beforeAll(async () => {
    url = await adapter.serve(t.db, routes);
    await stockUp(`${name}-mug`, 100);
  });
  const pay = (ref: string, key?: string, more: Record<string, string> = {}) =>
    post({ amount: 1200, sku: `${name}-mug`, ref }, key === undefined ? more : { 'idempotency-key': key, ...more });

  it('answers 400 IDEMPOTENCY_KEY_INVALID to a key that is missing, empty, over 255 characters, malformed or sent twice, and changes nothing', async () => {
    const ref = `${name}-bad-key`;
    const answers = [await fetch(`${url}/payments`, pay(ref))];
    for (const key of ['', 'k'.repeat(256), '"open', 'k1, k1']) answers.push(await fetch(`${url}/payments`, pay(ref, key)));
    for (const res of answers) {
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(await res.json()).toMatchObject({ type: 'about:blank', status: 400, code: 'IDEMPOTENCY_KEY_INVALID', retryable: false });
    }
    const headers = ['content-type', 'application/json', 'x-customer', 'alice', 'idempotency-key', 'twice-a', 'idempotency-key', 'twice-b'];
    const twice = await rawRequest(`${url}/payments`, 'POST', headers, JSON.stringify({ amount: 1, sku: `${name}-mug`, ref }));
    expect(twice.status).toBe(400);
    expect(JSON.parse(twice.body)).toMatchObject({ code: 'IDEMPOTENCY_KEY_INVALID' });
    expect(await chargesFor(ref)).toBe(0);
    expect((await keyRows(t.pool)).filter((k) => k.key.startsWith('twice') || k.key === 'k1, k1')).toEqual([]);
  });

  it('takes the key as sent, trimming only spaces and tabs: a key ending in a no-break space (byte A0) is another key', async () => {
    const body = JSON.stringify({ ref: `${name}-nbsp`, fail: [] });
    const send = (key: string) => rawRequest(`${url}/flaky`, 'POST', ['content-type', 'application/json', 'x-customer', 'alice', 'idempotency-key', key], body);
    const plain = await send(`${name}-nbsp`);
    const nbsp = await send(`${name}-nbsp\u00a0`);
    expect([plain.status, nbsp.status]).toEqual([201, 201]);
    expect(JSON.parse(nbsp.body)).toMatchObject({ call: 2 });
    // Whatever bytes the client wrote for it, the server's key still ends in the no-break space.
    const keys = (await keyRows(t.pool)).filter((k) => k.key.startsWith(`${name}-nbsp`)).map((k) => k.key);
    expect(keys).toHaveLength(2);
    expect(keys.filter((k) => k.endsWith('\u00a0'))).toHaveLength(1);
  });

  it('replays the original status, body and stored headers with Idempotent-Replayed: true, and never set-cookie or unlisted headers', async () => {
    const key = `${name}-replay`;
    const first = await fetch(`${url}/payments`, pay(key, key));
    const firstBody = await first.json();
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(first.headers.get('set-cookie')).toBe('session=first-caller');
    expect(first.headers.get('x-charge-id')).toBe(String((firstBody as { id: number }).id));
    expect(first.headers.get('idempotency-key-expires')).toBeNull();

    const replay = await fetch(`${url}/payments`, pay(key, key));
    expect(replay.status).toBe(201);
    expect(await replay.json()).toEqual(firstBody);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('location')).toBe(first.headers.get('location'));
    expect(replay.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(replay.headers.get('set-cookie')).toBeNull();
    expect(replay.headers.get('x-charge-id')).toBeNull();
    expect(await chargesFor(key)).toBe(1);
    expect(await keysFor(key)).toMatchObject([{ scope: 'alice', status: 'completed' }]);
  });

  it('never replays one scope\'s answer to another scope', async () => {
    const key = `${name}-scoped`;
    await fetch(`${url}/payments`, pay(key, key));
    const bob = await fetch(`${url}/payments`, pay(key, key, { 'x-customer': 'bob' }));
    expect(bob.status).toBe(201);
    expect(bob.headers.get('idempotent-replayed')).toBeNull();
    expect(await chargesFor(key)).toBe(2);
    expect((await keysFor(key)).map((k) => k.scope)).toEqual(['alice', 'bob']);
  });

  it('answers 422 IDEMPOTENCY_KEY_REUSED to the same key with another body, query string or path, and changes nothing', async () => {
    const key = `${name}-reused`;
    expect((await fetch(`${url}/payments`, pay(key, key))).status).toBe(201);
    const answers = [
      await fetch(`${url}/payments`, post({ amount: 99999, sku: `${name}-mug`, ref: key }, { 'idempotency-key': key })),
      await fetch(`${url}/payments?to=mallory`, pay(key, key)),
      await fetch(`${url}/payments-reject`, pay(key, key)),
    ];
    for (const res of answers) {
      expect(res.status).toBe(422);
      expect(await res.json()).toMatchObject({ status: 422, code: 'IDEMPOTENCY_KEY_REUSED', retryable: false });
    }
    expect(await chargesFor(key)).toBe(1);
    expect(await keysFor(key)).toHaveLength(1);
  });

  it('answers 413 to a body over maxBodyBytes: nothing claimed, nothing run', async () => {
    const before = await count(t.pool, 'charges', "ref = 'small'");
    const res = await fetch(`${url}/small`, { method: 'POST', headers: { 'content-type': 'text/plain', 'idempotency-key': `${name}-large` }, body: 'x'.repeat(2048) });
    expect(res.status).toBe(413);
    // Express and the Web handler read such a body themselves; Fastify's own bodyLimit answers first.
    if (name !== 'fastify') expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_BODY_TOO_LARGE' });
    expect(await count(t.pool, 'charges', "ref = 'small'")).toBe(before);
    expect(await keysFor(`${name}-large`)).toEqual([]);
  });

  it('claims nothing and runs nothing for a body cut off before its end', async () => {
    const key = `${name}-cut-off`;
    const before = await count(t.pool, 'charges', "ref = 'small'");
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    await once(socket, 'connect');
    const head = `POST /small HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nidempotency-key: ${key}\r\ncontent-length: 100\r\n\r\n`;
    // The head and part of the body leave; then the client goes away.
    await new Promise<void>((resolve, reject) => socket.write(`${head}{"part":`, (error) => (error ? reject(error) : resolve())));
    socket.destroy();
    await once(socket, 'close');
    // A complete request after it (this route's handler ignores the body): it runs, once.
    expect((await fetch(`${url}/small`, post({}, { 'idempotency-key': `${key}-after` }))).status).toBe(201);
    expect(await count(t.pool, 'charges', "ref = 'small'")).toBe(before + 1);
    expect(await keysFor(key)).toEqual([]);
  });

  it('answers 409 IDEMPOTENCY_IN_FLIGHT with Retry-After to a duplicate while the first is in flight, and the first commits once', async () => {
    const key = `${name}-in-flight`;
    const release = deferred();
    const inside = deferred();
    entered.set(key, inside.resolve);
    holds.set(key, release.promise);
    const first = fetch(`${url}/payments-reject`, pay(key, key));
    await inside.promise;
    const duplicate = await fetch(`${url}/payments-reject`, pay(key, key));
    release.resolve();
    expect(duplicate.status).toBe(409);
    expect(duplicate.headers.get('retry-after')).toBe('2');
    expect(await duplicate.json()).toMatchObject({ code: 'IDEMPOTENCY_IN_FLIGHT', retryable: true });
    expect((await first).status).toBe(201);
    expect((await fetch(`${url}/payments-reject`, pay(key, key))).headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor(key)).toBe(1);
  });

  it('answers 409 IDEMPOTENCY_SERIALIZATION_FAILURE under REPEATABLE READ when a duplicate on another pool committed first, and the retry replays', async () => {
    const pools = [t.newPool(4), t.newPool(4)];
    const [one, two] = await Promise.all(pools.map((pool) => adapter.serve(drizzle({ client: pool }), repeatableRead)));
    const key = `${name}-rr`;
    const release = deferred();
    const inside = deferred();
    entered.set(key, inside.resolve);
    holds.set(key, release.promise);
    const first = fetch(`${one}/payments`, pay(key, key));
    await inside.promise;
    const duplicate = fetch(`${two}/payments`, pay(key, key));
    await waitForLockWaiters(t.pool, 1);
    release.resolve();
    const refused = await duplicate;
    expect(refused.status).toBe(409);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toMatchObject({ code: 'IDEMPOTENCY_SERIALIZATION_FAILURE', retryable: true });
    expect((await first).status).toBe(201);
    expect((await fetch(`${two}/payments`, pay(key, key))).headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor(key)).toBe(1);
  });

  it('rolls back a 5xx, a 408, 425 or 429, and a throw with their writes: nothing stored, each retry runs again, the success is stored once', async () => {
    const key = `${name}-flaky`;
    const body = { ref: key, fail: [503, 429, 408, 425, 'throw'] };
    const statuses = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${url}/flaky`, post(body, { 'idempotency-key': key }));
      statuses.push(res.status);
      expect(res.headers.get('idempotent-replayed')).toBeNull();
      expect(await chargesFor(key)).toBe(0);
      expect(await keysFor(key)).toEqual([]);
    }
    expect(statuses).toEqual([503, 429, 408, 425, 500]);
    const succeeded = await fetch(`${url}/flaky`, post(body, { 'idempotency-key': key }));
    const replay = await fetch(`${url}/flaky`, post(body, { 'idempotency-key': key }));
    expect([succeeded.status, await succeeded.json()]).toEqual([201, { ref: key, call: 6 }]);
    expect([replay.status, replay.headers.get('idempotent-replayed'), await replay.json()]).toEqual([201, 'true', { ref: key, call: 6 }]);
    expect(calls.get(key)).toBe(6);
    expect(await chargesFor(key)).toBe(1);
  });

  it('stores a 4xx business answer and replays it', async () => {
    const key = `${name}-unknown-sku`;
    const init = post({ amount: 1, sku: 'no-such-sku', ref: key }, { 'idempotency-key': key });
    const first = await fetch(`${url}/payments`, init);
    const replay = await fetch(`${url}/payments`, init);
    expect([first.status, await first.json()]).toEqual([404, { error: 'unknown_sku' }]);
    expect([replay.status, replay.headers.get('idempotent-replayed'), await replay.json()]).toEqual([404, 'true', { error: 'unknown_sku' }]);
    expect(await keysFor(key)).toMatchObject([{ status: 'completed' }]);
  });

  it('answers 503 IDEMPOTENCY_COMMIT_FAILED with Retry-After, never a 2xx, when COMMIT fails after the handler', async () => {
    const key = `${name}-doomed`;
    const res = await fetch(`${url}/ledger`, post({}, { 'idempotency-key': key }));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_COMMIT_FAILED', retryable: true });
    expect(await count(t.pool, 'ledger')).toBe(0);
    expect(await keysFor(key)).toEqual([]);
  });

  it('answers 500 IDEMPOTENCY_RESULT_INVALID to an answer that cannot be stored, rolled back and not retryable', async () => {
    const key = `${name}-bigint`;
    const res = await fetch(`${url}/unstorable`, post({ ref: key }, { 'idempotency-key': key }));
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_RESULT_INVALID', retryable: false });
    expect(await chargesFor(key)).toBe(0);
    expect(await keysFor(key)).toEqual([]);
  });

  it('answers 500 IDEMPOTENCY_OPTIONS_INVALID when the scope function returns no scope: nothing claimed, handler not run', async () => {
    const key = `${name}-no-scope`;
    const res = await fetch(`${url}/strict`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify({ ref: key, fail: [] }) });
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
    expect(calls.get(key)).toBeUndefined();
    expect(await keysFor(key)).toEqual([]);
  });

  it('passes GET, PUT and DELETE through: no key required, none stored, the handler runs each time', async () => {
    const ref = `${name}-pass`;
    const answers = [
      await fetch(`${url}/flaky?ref=${ref}`, { headers: { 'x-customer': 'alice' } }),
      await fetch(`${url}/flaky`, post({ ref, fail: [] }, { 'idempotency-key': `${ref}-put` }, 'PUT')),
      await fetch(`${url}/flaky`, post({ ref, fail: [] }, {}, 'DELETE')),
    ];
    // GET has no body, so the handler's destructuring of it fails: it ran, and no key was asked for.
    expect(answers.map((res) => res.status)).toEqual([500, 201, 201]);
    expect(calls.get(ref)).toBe(2);
    expect(await chargesFor(ref)).toBe(2);
    expect(await keysFor(`${ref}-put`)).toEqual([]);
  });

  it('sends a string under a text content-type as UTF-8 text with its own length, and a 204 with no body, the same on replays', async () => {
    for (const replayed of [null, 'true']) {
      const csv = await fetch(`${url}/csv`, post({}, { 'idempotency-key': `${name}-csv` }));
      expect([csv.status, csv.headers.get('content-type'), csv.headers.get('idempotent-replayed'), await csv.text()]).toEqual([
        200,
        'text/csv; charset=utf-8',
        replayed,
        'sku,qty\nmug,1\n',
      ]);
      const empty = await fetch(`${url}/no-content`, post({}, { 'idempotency-key': `${name}-204` }));
      expect([empty.status, empty.headers.get('content-type'), empty.headers.get('location'), empty.headers.get('idempotent-replayed')]).toEqual([
        204,
        null,
        '/somewhere',
        replayed,
      ]);
      expect(await empty.text()).toBe('');
    }
  });

  it('sends Idempotent-Replayed and Idempotency-Key-Expires only as the library says them, never as a handler returned them', async () => {
    const first = await fetch(`${url}/forwarding`, post({}, { 'idempotency-key': `${name}-forwarding` }));
    const retry = await fetch(`${url}/forwarding`, post({}, { 'idempotency-key': `${name}-forwarding` }));
    const seen = (res: Response) => [res.status, res.headers.get('idempotent-replayed'), res.headers.get('idempotency-key-expires'), res.headers.get('x-upstream')];
    expect(seen(first)).toEqual([201, null, null, 'yes']);
    expect(seen(retry)).toEqual([201, 'true', null, null]);
  });

  it('answers only after COMMIT: on arrival, the answer\'s effects are visible to everyone', async () => {
    for (const key of [`${name}-slow-commit-1`, `${name}-slow-commit-2`]) {
      const res = await fetch(`${url}/payments`, pay(key, key));
      // Read before the body: the status line alone must mean "committed".
      const visible = await chargesFor(key);
      expect(res.status).toBe(201);
      expect(visible).toBe(1);
      expect(await keysFor(key)).toMatchObject([{ status: 'completed' }]);
    }
  });

  it('runs 20 concurrent duplicates once, and gives all of them the same answer', async () => {
    const key = `${name}-storm`;
    const sku = `${name}-storm-sku`;
    await stockUp(sku, 5);
    const answers = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await fetch(`${url}/payments`, post({ amount: 700, sku, ref: key }, { 'idempotency-key': key }));
        return { status: res.status, replayed: res.headers.get('idempotent-replayed'), body: await res.json() };
      }),
    );
    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([201]));
    expect(new Set(answers.map((a) => JSON.stringify(a.body))).size).toBe(1);
    expect(answers.filter((a) => a.replayed === null)).toHaveLength(1);
    expect(await chargesFor(key)).toBe(1);
    expect(await stockOf(sku)).toBe(4);
    expect(await keysFor(key)).toMatchObject([{ status: 'completed' }]);
  });

  it('advertises the key\'s expiry (database clock) in Idempotency-Key-Expires on the first answer and on replays, when asked', async () => {
    const key = `${name}-expiring`;
    const first = await fetch(`${url}/payments-expiring`, pay(key, key));
    const replay = await fetch(`${url}/payments-expiring`, pay(key, key));
    const { rows } = await t.pool.query<{ at: Date }>(`select date_trunc('second', expires_at) as at from idempotency_keys where key = $1`, [key]);
    const expected = rows[0]!.at.toUTCString();
    expect(first.headers.get('idempotency-key-expires')).toBe(expected);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('idempotency-key-expires')).toBe(expected);
    const problem = await fetch(`${url}/payments-expiring`, pay(key, ''));
    expect(problem.headers.get('idempotency-key-expires')).toBeNull();
  });
});

// The gateway the workflows call: in memory, with its own idempotency keys (a
// downstream key is charged once) and a ledger to audit. Faults by ref, one
// per call: 'drop' charges and never answers (the call times out), 'hold'
// charges and waits for the test's release.
const gatewayLedger = new Map<string, { id: string; ref: string; amount: number }>();
const gatewayFaults = new Map<string, ('drop' | 'hold')[]>();
const gatewayCalls = new Map<string, number>();
// Faults of the workflow itself: how many more runs throw after the first step.
const workflowThrows = new Map<string, number>();
// How often each step's own code ran, by `${ref}:${step}`: a committed step never runs again.
const stepRuns = new Map<string, number>();

const bump = (counts: Map<string, number>, name: string) => counts.set(name, (counts.get(name) ?? 0) + 1);

async function gatewayCharge(ref: string, downstreamKey: string, amount: number, signal: AbortSignal): Promise<{ id: string }> {
  bump(gatewayCalls, ref);
  let charge = gatewayLedger.get(downstreamKey);
  if (charge === undefined) {
    charge = { id: `ch_${gatewayLedger.size + 1}`, ref, amount };
    gatewayLedger.set(downstreamKey, charge);
  }
  const fault = gatewayFaults.get(ref)?.shift();
  if (fault === 'drop') {
    // The answer is lost on the way: the caller only ever sees its own timeout.
    await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('socket hang up')), { once: true }));
  }
  if (fault === 'hold') {
    entered.get(ref)?.();
    await holds.get(ref);
  }
  return { id: charge.id };
}

/** Makes the gateway's next call for `ref` charge and then wait: `inside` resolves once it waits, `release()` lets it answer. */
function holdAtGateway(ref: string): { inside: Promise<void>; release: () => void } {
  const release = deferred();
  const inside = deferred();
  entered.set(ref, inside.resolve);
  holds.set(ref, release.promise);
  gatewayFaults.set(ref, ['hold']);
  return { inside: inside.promise, release: release.resolve };
}

/** A payment through the gateway: a pending charge row, the gateway's charge, the answer. */
function paymentWorkflow(name: string, options: { maxAttempts?: number; lease?: Duration } = {}): Workflow<PaymentInput, IdempotentResponse> {
  return defineWorkflow(
    name,
    async (ctx, input: PaymentInput) => {
      const intent = await ctx.step('record-intent', async (tx) => {
        bump(stepRuns, `${input.ref}:record-intent`);
        return insertCharge(tx, input.ref, input.amount);
      });
      const throws = workflowThrows.get(input.ref) ?? 0;
      if (throws > 0) {
        workflowThrows.set(input.ref, throws - 1);
        throw new Error('card network down');
      }
      const charge = await ctx.call('charge', ({ downstreamKey, signal }) => gatewayCharge(input.ref, downstreamKey, input.amount, signal), {
        timeout: '300ms',
        retries: 0,
        reconcile: async ({ downstreamKey }) => {
          const found = gatewayLedger.get(downstreamKey);
          return found === undefined ? undefined : { id: found.id };
        },
      });
      return {
        status: 201,
        body: { id: intent.id, amount: input.amount, chargeId: charge.id },
        headers: { location: `/payments/${intent.id}`, 'set-cookie': 'session=first-caller', 'x-charge-id': charge.id },
      };
    },
    { lease: '30s', ...options },
  );
}

const workflowRoutes: WorkflowSpec[] = [
  { path: '/pay', workflow: paymentWorkflow('conformance.pay') },
  // An hour's lease: a Retry-After taken from it cannot be mistaken for the route's default of 1.
  { path: '/pay-reject', workflow: paymentWorkflow('conformance.pay', { lease: '1h' }), options: { onInFlight: 'reject' } },
  { path: '/pay-doomed', workflow: paymentWorkflow('conformance.doomed', { maxAttempts: 2 }) },
];

/** The key row's leased columns, for audits. */
async function leasedRow(key: string) {
  const { rows } = await t.pool.query<{ status: string; attempts: number; owner_token: string | null; lease_running: boolean | null; steps: Record<string, unknown> | null }>(
    `select status, attempts, owner_token, locked_until > now() as lease_running, steps from idempotency_keys where key = $1`,
    [key],
  );
  return rows;
}
const ledgerFor = (ref: string) => [...gatewayLedger.values()].filter((charge) => charge.ref === ref);

describe.each(adapters)('a workflow route on the $name adapter', (adapter) => {
  const { name } = adapter;
  let url: string;
  beforeAll(async () => {
    url = await adapter.serveWorkflows(t.db, workflowRoutes);
  });
  const pay = (key: string, amount = 1200, path = '/pay') =>
    fetch(`${url}${path}`, post({ ref: key, amount }, { 'idempotency-key': key }));

  it('runs the workflow once: 201 with all its headers, then the same answer with Idempotent-Replayed: true and only the stored headers', async () => {
    const key = `${name}-wf-replay`;
    const first = await pay(key);
    const firstBody = (await first.json()) as { id: number; chargeId: string };
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(first.headers.get('set-cookie')).toBe('session=first-caller');
    expect(first.headers.get('x-charge-id')).toBe(firstBody.chargeId);

    const replay = await pay(key);
    expect(replay.status).toBe(201);
    expect(await replay.json()).toEqual(firstBody);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('location')).toBe(`/payments/${firstBody.id}`);
    expect(replay.headers.get('set-cookie')).toBeNull();
    expect(replay.headers.get('x-charge-id')).toBeNull();
    expect(await chargesFor(key)).toBe(1);
    expect(ledgerFor(key)).toHaveLength(1);
    expect(await leasedRow(key)).toMatchObject([{ status: 'completed', attempts: 1, owner_token: null }]);
  });

  it('answers 422 IDEMPOTENCY_KEY_REUSED to the same key with another body, and charges nothing more', async () => {
    const key = `${name}-wf-reused`;
    expect((await pay(key)).status).toBe(201);
    const other = await pay(key, 99_999);
    expect(other.status).toBe(422);
    expect(await other.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', retryable: false });
    expect(await chargesFor(key)).toBe(1);
    expect(ledgerFor(key)).toHaveLength(1);
    expect(await leasedRow(key)).toMatchObject([{ status: 'completed', attempts: 1 }]);
  });

  it('answers 400 to a request without a key: nothing claimed, nothing run', async () => {
    const ref = `${name}-wf-no-key`;
    const res = await fetch(`${url}/pay`, post({ ref, amount: 1 }));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_INVALID' });
    expect(stepRuns.get(`${ref}:record-intent`)).toBeUndefined();
    expect(await chargesFor(ref)).toBe(0);
  });

  it('hands an error of `input` to the framework\'s error handler: nothing claimed, nothing run', async () => {
    const key = `${name}-wf-bad-input`;
    const res = await fetch(`${url}/pay`, post({ ref: key }, { 'idempotency-key': key }));
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: 'amount is required' });
    expect(stepRuns.get(`${key}:record-intent`)).toBeUndefined();
    expect(await leasedRow(key)).toEqual([]);
  });

  it('answers 409 IDEMPOTENCY_IN_FLIGHT with Retry-After (seconds left on the lease) while the lease holds the key, and the holder completes once', async () => {
    const key = `${name}-wf-in-flight`;
    const { inside, release } = holdAtGateway(key);
    const first = pay(key, 1200, '/pay-reject');
    await inside;
    const duplicate = await pay(key, 1200, '/pay-reject');
    release();
    expect(duplicate.status).toBe(409);
    expect(await duplicate.json()).toMatchObject({ code: 'IDEMPOTENCY_IN_FLIGHT', retryable: true });
    // The lease is an hour, and just began: the answer says when it ends.
    const retryAfter = Number(duplicate.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(3000);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect((await first).status).toBe(201);
    expect((await pay(key, 1200, '/pay-reject')).headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor(key)).toBe(1);
    expect(gatewayCalls.get(key)).toBe(1);
    expect(await leasedRow(key)).toMatchObject([{ status: 'completed', attempts: 1, owner_token: null }]);
  });

  it('answers 409 IDEMPOTENCY_LEASE_LOST with Retry-After 1 when another process took the key over mid-run: the late write is refused', async () => {
    const key = `${name}-wf-taken-over`;
    const { inside, release } = holdAtGateway(key);
    const first = pay(key);
    await inside;
    // What a takeover writes: a new owner and a new lease. This run is now a zombie.
    const { rows } = await t.pool.query<{ token: string }>(
      `update idempotency_keys set owner_token = gen_random_uuid(), locked_until = now() + interval '1 hour', attempts = attempts + 1
       where key = $1 returning owner_token::text as token`,
      [key],
    );
    release();
    const lost = await first;
    expect(lost.status).toBe(409);
    expect(lost.headers.get('retry-after')).toBe('1');
    const problem = (await lost.json()) as { code: string; retryable: boolean; detail: string };
    expect(problem).toMatchObject({ code: 'IDEMPOTENCY_LEASE_LOST', retryable: true });
    // The workflow's name is the server's business, as in the failed-key answer: the client gets what to do, not our internals.
    expect(problem.detail).not.toContain('conformance.pay');
    // The zombie recorded nothing after the takeover: the charge's answer is the new owner's to find (by its downstream key).
    const [row] = await leasedRow(key);
    expect(row).toMatchObject({ status: 'started', attempts: 2, owner_token: rows[0]!.token, lease_running: true });
    expect(Object.keys(row!.steps ?? {})).toEqual(['record-intent']);
    expect(await chargesFor(key)).toBe(1);
    expect(ledgerFor(key)).toHaveLength(1);
  });

  it('answers 503 with Retry-After when the workflow throws; the key stays started, and the retry resumes without repeating the committed step', async () => {
    const key = `${name}-wf-throws`;
    workflowThrows.set(key, 1);
    const failed = await pay(key);
    expect(failed.status).toBe(503);
    expect(failed.headers.get('retry-after')).toBe('1');
    expect(await failed.json()).toMatchObject({ code: 'IDEMPOTENCY_OUTCOME_UNKNOWN', retryable: true });
    expect(reported.filter((r) => r.key === key).map((r) => (r.error as Error).message)).toEqual(['card network down']);
    // Started, its lease released at once: the retry need not wait for it to run out.
    expect(await leasedRow(key)).toMatchObject([{ status: 'started', attempts: 1, lease_running: false }]);
    expect(await chargesFor(key)).toBe(1);

    const retry = await pay(key);
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(stepRuns.get(`${key}:record-intent`)).toBe(1);
    expect(await chargesFor(key)).toBe(1);
    expect(ledgerFor(key)).toHaveLength(1);
    expect(await leasedRow(key)).toMatchObject([{ status: 'completed', attempts: 2, owner_token: null }]);
  });

  it('answers 503 IDEMPOTENCY_OUTCOME_UNKNOWN when the gateway charged but its answer was lost; the retry reconciles instead of charging again', async () => {
    const key = `${name}-wf-dropped`;
    gatewayFaults.set(key, ['drop']);
    const unknown = await pay(key);
    expect(unknown.status).toBe(503);
    expect(unknown.headers.get('retry-after')).toBe('1');
    expect(await unknown.json()).toMatchObject({ code: 'IDEMPOTENCY_OUTCOME_UNKNOWN', retryable: true });
    expect(reported.filter((r) => r.key === key).map((r) => (r.error as { code?: string }).code)).toEqual(['IDEMPOTENCY_OUTCOME_UNKNOWN']);
    expect(await leasedRow(key)).toMatchObject([{ status: 'started', lease_running: false }]);

    const retry = await pay(key);
    const body = (await retry.json()) as { chargeId: string };
    expect(retry.status).toBe(201);
    expect(body.chargeId).toBe(ledgerFor(key)[0]!.id);
    // Reconcile found the charge: the gateway was called once, and charged once.
    expect(gatewayCalls.get(key)).toBe(1);
    expect(ledgerFor(key)).toHaveLength(1);
    expect(stepRuns.get(`${key}:record-intent`)).toBe(1);
    expect(await chargesFor(key)).toBe(1);
    expect(await leasedRow(key)).toMatchObject([{ status: 'completed', attempts: 2, owner_token: null }]);
  });

  it('answers 500 IDEMPOTENCY_WORKFLOW_FAILED, not retryable, once the workflow threw on its last attempt (a definite error), and never runs it again', async () => {
    const key = `${name}-wf-doomed`;
    workflowThrows.set(key, 100);
    const answers = [];
    for (let i = 0; i < 3; i++) {
      const res = await pay(key, 1200, '/pay-doomed');
      answers.push({ status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { code: string; retryable: boolean; detail: string } });
    }
    // The first run throws and leaves the key to a retry; the second is the last attempt: it records the failure.
    expect(answers[0]).toMatchObject({ status: 503, retryAfter: '1', body: { code: 'IDEMPOTENCY_OUTCOME_UNKNOWN', retryable: true } });
    for (const answer of answers.slice(1)) {
      expect(answer).toMatchObject({ status: 500, retryAfter: null, body: { code: 'IDEMPOTENCY_WORKFLOW_FAILED', retryable: false } });
      // The workflow's name and steps are the server's business.
      expect(answer.body.detail).not.toContain('conformance.doomed');
    }
    // maxAttempts 2: two runs threw, the step committed once, nothing was charged.
    expect(100 - workflowThrows.get(key)!).toBe(2);
    expect(stepRuns.get(`${key}:record-intent`)).toBe(1);
    expect(await chargesFor(key)).toBe(1);
    expect(gatewayCalls.get(key)).toBeUndefined();
    expect(await leasedRow(key)).toMatchObject([{ status: 'failed', attempts: 2, owner_token: null }]);
  });

  it('runs 20 concurrent duplicates once: one charge at the gateway, one pending row, every client the same answer', async () => {
    const key = `${name}-wf-storm`;
    const answers = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await pay(key, 700);
        return { status: res.status, replayed: res.headers.get('idempotent-replayed'), body: await res.json() };
      }),
    );
    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([201]));
    expect(new Set(answers.map((a) => JSON.stringify(a.body))).size).toBe(1);
    expect(answers.filter((a) => a.replayed === null)).toHaveLength(1);
    expect(stepRuns.get(`${key}:record-intent`)).toBe(1);
    expect(gatewayCalls.get(key)).toBe(1);
    expect(ledgerFor(key)).toHaveLength(1);
    expect(await chargesFor(key)).toBe(1);
    expect(await leasedRow(key)).toMatchObject([{ status: 'completed', attempts: 1, owner_token: null }]);
  });
});
