import { fileURLToPath } from 'node:url';
// Tests 3 and 4 of the HTTP issue: every row of the status table in DESIGN.md,
// header filtering, and handlers that fail after writing. Real HTTP, real
// Postgres; each test ends with an audit of what the database holds.
import { sql } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import express, { type ErrorRequestHandler, type Express } from 'express';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { IdempotencyOptionsInvalidError } from '../../src/shared/errors.js';
import { idempotent, type IdempotentHandler, type IdempotentRouteOptions } from '../../src/express.js';
import type { TransactionOf } from '../../src/driver/database.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge, keyRows } from '../support/fixtures.js';
import { listen, rawRequest, type Listening } from '../support/http.js';
import { paymentsApp, stockUp } from '../support/payments-app.js';

type Tx = Parameters<IdempotentHandler<never>>[1];
const t = await testDatabase();
await createBusinessTables(t.pool);

const servers: Listening[] = [];
afterAll(async () => Promise.all(servers.map((s) => s.close())));

/** Serves `build(app)` with JSON bodies and an error handler that answers 500. */
async function serve(build: (app: Express) => void): Promise<string> {
  const app = express();
  app.use(express.json());
  build(app);
  const onError: ErrorRequestHandler = (error: Error, _req, res, _next) => {
    res.status(500).json({ error: error.message });
  };
  app.use(onError);
  const server = await listen(app);
  servers.push(server);
  return server.url;
}

/** A route whose handler records one charge with `ref` from the body and then does `then`. */
function chargeRoute(
  db: NodePgDatabase,
  then: (callNumber: number) => Awaited<ReturnType<IdempotentHandler<Tx>>>,
  options: Partial<IdempotentRouteOptions> = {},
) {
  let calls = 0;
  return idempotent(
    db,
    async (req, tx) => {
      await insertCharge(tx, (req.body as { ref: string }).ref, 100);
      return then(++calls);
    },
    { scope: 'charges-tenant', ...options },
  );
}

const json = (body: unknown, headers: Record<string, string> = {}, method = 'POST'): RequestInit => ({
  method,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});
const chargesFor = (ref: string) => count(t.pool, 'charges', 'ref = $1', [ref]);
const keysFor = async (key: string) => (await keyRows(t.pool)).filter((k) => k.key === key);

describe('the Idempotency-Key header', () => {
  let url: string;
  beforeAll(async () => {
    url = await serve((app) => app.post('/charges', chargeRoute(t.db, () => ({ status: 201, body: { ok: true } }))));
    url += '/charges';
  });

  it('accepts the IETF structured-field form and the bare form as the same key', async () => {
    const first = await fetch(url, json({ ref: 'sf' }, { 'idempotency-key': '"order-sf-1"' }));
    const second = await fetch(url, json({ ref: 'sf' }, { 'idempotency-key': 'order-sf-1' }));
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(second.status).toBe(201);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor('sf')).toBe(1);
    expect(await keysFor('order-sf-1')).toHaveLength(1);
  });

  it('unescapes \\" and \\\\ in a structured-field key', async () => {
    const res = await fetch(url, json({ ref: 'escaped' }, { 'idempotency-key': String.raw`"a\"b\\c"` }));
    expect(res.status).toBe(201);
    expect(await keysFor('a"b\\c')).toHaveLength(1);
  });

  it('answers 400 to a missing key, and changes nothing', async () => {
    const res = await fetch(url, json({ ref: 'missing' }));
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await res.json()).toMatchObject({ type: 'about:blank', title: 'Bad Request', status: 400, code: 'IDEMPOTENCY_KEY_INVALID' });
    expect(await chargesFor('missing')).toBe(0);
  });

  it.each([
    ['empty', ''],
    ['an empty quoted string', '""'],
    ['over 255 characters', 'k'.repeat(256)],
    ['quoted and over 255 characters', `"${'k'.repeat(256)}"`],
    ['a quoted string without its closing quote', '"open'],
    ['characters after the closing quote', '"abc"def'],
    ['an escape other than \\" or \\\\', String.raw`"a\nb"`],
  ])('answers 400 to a key that is %s, and changes nothing', async (_what, key) => {
    const before = (await keyRows(t.pool)).length;
    const res = await rawRequest(url, 'POST', ['content-type', 'application/json', 'idempotency-key', key], JSON.stringify({ ref: 'bad-key' }));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ status: 400, code: 'IDEMPOTENCY_KEY_INVALID' });
    expect(await chargesFor('bad-key')).toBe(0);
    expect(await keyRows(t.pool)).toHaveLength(before);
  });

  it('accepts a key of exactly 255 characters', async () => {
    const res = await fetch(url, json({ ref: 'longest' }, { 'idempotency-key': 'k'.repeat(255) }));
    expect(res.status).toBe(201);
    expect(await chargesFor('longest')).toBe(1);
  });

  it('answers 400 to a key sent on two header lines, and changes nothing', async () => {
    const headers = ['content-type', 'application/json', 'idempotency-key', 'twice-a', 'idempotency-key', 'twice-b'];
    const res = await rawRequest(url, 'POST', headers, JSON.stringify({ ref: 'twice' }));
    expect(res.status).toBe(400);
    expect(await chargesFor('twice')).toBe(0);
  });

  it.each([
    ['bare', 'k1, k1'],
    ['bare, without a space', 'k1,k2'],
    ['as structured-field strings', '"k1", "k1"'],
  ])('answers 400 to a key sent twice in one header line (%s, as a proxy merges them), and changes nothing', async (_form, line) => {
    const before = (await keyRows(t.pool)).length;
    const res = await rawRequest(url, 'POST', ['content-type', 'application/json', 'idempotency-key', line], JSON.stringify({ ref: 'merged' }));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'IDEMPOTENCY_KEY_INVALID' });
    expect(await chargesFor('merged')).toBe(0);
    expect(await keyRows(t.pool)).toHaveLength(before);
  });

  it('runs a request without a key once, keyless, when the key is optional', async () => {
    const optional = `${await serve((app) => app.post('/charges', chargeRoute(t.db, () => ({ status: 201 }), { required: false })))}/charges`;
    expect((await fetch(optional, json({ ref: 'optional' }))).status).toBe(201);
    expect((await fetch(optional, json({ ref: 'optional' }))).status).toBe(201);
    expect(await chargesFor('optional')).toBe(2);
    expect(await count(t.pool, 'idempotency_keys', "key like 'optional%'")).toBe(0);
  });
});

describe('a completed key', () => {
  let url: string;
  beforeAll(async () => {
    await stockUp(t.db, 'sku-a', 5);
    await stockUp(t.db, 'sku-empty', 0);
    url = `${await serve((app) => app.use(paymentsApp(t.db)))}/payments`;
  });
  const pay = (key: string, body: object, customer = 'alice', extra: Record<string, string> = {}) =>
    fetch(url, json(body, { 'idempotency-key': key, 'x-customer': customer, ...extra }));

  it('replays the original status, body and stored headers with Idempotent-Replayed: true', async () => {
    const first = await pay('pay-1', { amount: 500, sku: 'sku-a', ref: 'pay-1' }, 'alice', { authorization: 'Bearer s3cret' });
    const replay = await pay('pay-1', { amount: 500, sku: 'sku-a', ref: 'pay-1' });
    const body = await first.json();
    expect(first.status).toBe(201);
    expect(first.headers.get('set-cookie')).toBe('session=first-caller');
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.json()).toEqual(body);
    expect(replay.headers.get('location')).toBe(first.headers.get('location'));
    expect(replay.headers.get('content-type')).toBe(first.headers.get('content-type'));
    expect(await chargesFor('pay-1')).toBe(1);
    expect(await count(t.pool, 'stock', "sku = 'sku-a' and quantity = 4")).toBe(1);
  });

  it('replays with one SELECT and no transaction', async () => {
    const observed = drizzle({ client: t.pool });
    const counted = `${await serve((app) => app.post('/charges', chargeRoute(observed, () => ({ status: 201 }))))}/charges`;
    const init = json({ ref: 'cheap' }, { 'idempotency-key': 'cheap' });
    expect((await fetch(counted, init)).status).toBe(201);
    const transaction = vi.spyOn(observed, 'transaction');
    const checkout = vi.spyOn(t.pool, 'connect');
    const query = vi.spyOn(t.pool, 'query');
    const replay = await fetch(counted, init);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(transaction).not.toHaveBeenCalled();
    // One statement on the pool (pool.query checks a client out for it, and only for it).
    expect(query).toHaveBeenCalledTimes(1);
    expect(checkout).toHaveBeenCalledTimes(1);
    expect((query.mock.calls[0]![0] as unknown as { text: string }).text).toMatch(/^select status, fingerprint, response/);
    checkout.mockRestore();
    query.mockRestore();
  });

  it('never stores or replays set-cookie, unlisted headers or anything of the request', async () => {
    await pay('pay-2', { amount: 500, sku: 'sku-a', ref: 'pay-2' }, 'alice', { authorization: 'Bearer s3cret' });
    const replay = await pay('pay-2', { amount: 500, sku: 'sku-a', ref: 'pay-2' });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('set-cookie')).toBeNull();
    expect(replay.headers.get('x-charge-id')).toBeNull();
    const [row] = await keysFor('pay-2');
    const stored = JSON.stringify(row!.response);
    expect(stored).not.toMatch(/set-cookie|first-caller|x-charge-id|authorization|s3cret/i);
    expect(Object.keys((row!.response as { value: { headers: object } }).value.headers)).toEqual(['location']);
  });

  it('replays a content-type the handler chose, with the body as it was sent', async () => {
    const csv = `${await serve((app) =>
      app.post('/reports', chargeRoute(t.db, () => ({ status: 201, body: 'id,amount\n1,100\n', headers: { 'Content-Type': 'text/csv; charset=utf-8' } }))),
    )}/reports`;
    const init = json({ ref: 'csv' }, { 'idempotency-key': 'csv-1' });
    const first = await fetch(csv, init);
    const replay = await fetch(csv, init);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    for (const res of [first, replay]) {
      expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8');
      expect(await res.text()).toBe('id,amount\n1,100\n');
    }
    expect(await chargesFor('csv')).toBe(1);
  });

  it('refuses to be configured to store set-cookie or credentials', () => {
    for (const header of ['set-cookie', 'Set-Cookie', 'authorization', 'cookie', 'transfer-encoding']) {
      expect(() => paymentsApp(t.db, { storedHeaders: ['content-type', header] })).toThrow(IdempotencyOptionsInvalidError);
    }
  });

  it('stores a 4xx business answer and replays it', async () => {
    const first = await pay('pay-empty', { amount: 500, sku: 'sku-empty', ref: 'pay-empty' });
    const replay = await pay('pay-empty', { amount: 500, sku: 'sku-empty', ref: 'pay-empty' });
    expect(first.status).toBe(409);
    expect(await first.json()).toEqual({ error: 'out_of_stock' });
    expect(replay.status).toBe(409);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('retry-after')).toBeNull();
    expect(await replay.json()).toEqual({ error: 'out_of_stock' });
    expect(await keysFor('pay-empty')).toMatchObject([{ status: 'completed' }]);
    expect(await chargesFor('pay-empty')).toBe(0);
  });

  it('never replays one scope\'s answer to another scope', async () => {
    const alice = await pay('shared-key', { amount: 500, sku: 'sku-a', ref: 'shared-alice' }, 'alice');
    const bob = await pay('shared-key', { amount: 700, sku: 'sku-a', ref: 'shared-bob' }, 'bob');
    expect(alice.status).toBe(201);
    expect(bob.status).toBe(201);
    expect(bob.headers.get('idempotent-replayed')).toBeNull();
    expect(await bob.json()).toMatchObject({ amount: 700 });
    expect(await chargesFor('shared-alice')).toBe(1);
    expect(await chargesFor('shared-bob')).toBe(1);
    expect((await keysFor('shared-key')).map((k) => k.scope)).toEqual(['alice', 'bob']);
  });

  it('answers 422 to the same key with another body or path, and changes nothing', async () => {
    const other = `${await serve((app) => app.use(paymentsApp(t.db)).post('/refunds', chargeRoute(t.db, () => ({ status: 201 }), { scope: (req) => req.get('x-customer') ?? 'anonymous' })))}`;
    expect((await pay('reuse', { amount: 500, sku: 'sku-a', ref: 'reuse' })).status).toBe(201);
    const otherBody = await pay('reuse', { amount: 900, sku: 'sku-a', ref: 'reuse' });
    const otherPath = await fetch(`${other}/refunds`, json({ amount: 500, sku: 'sku-a', ref: 'reuse' }, { 'idempotency-key': 'reuse', 'x-customer': 'alice' }));
    for (const res of [otherBody, otherPath]) {
      expect(res.status).toBe(422);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(await res.json()).toMatchObject({ status: 422, code: 'IDEMPOTENCY_KEY_REUSED', retryable: false });
    }
    expect(await chargesFor('reuse')).toBe(1);
  });
});

describe('a key in flight', () => {
  it('answers 409 with Retry-After when the wait bound runs out, and the first still commits once', async () => {
    await stockUp(t.db, 'sku-slow', 5);
    const entered = deferred();
    const release = deferred();
    const url = `${await serve((app) =>
      app.use(paymentsApp(t.db, { waitTimeout: '100ms' }, { afterWrites: async () => (entered.resolve(), release.promise) })),
    )}/payments`;
    const init = json({ amount: 500, sku: 'sku-slow', ref: 'slow' }, { 'idempotency-key': 'slow', 'x-customer': 'alice' });
    const first = fetch(url, init);
    await entered.promise;
    const duplicate = await fetch(url, init);
    release.resolve();
    expect(duplicate.status).toBe(409);
    expect(duplicate.headers.get('retry-after')).toBe('1');
    expect(await duplicate.json()).toMatchObject({ code: 'IDEMPOTENCY_IN_FLIGHT', retryable: true });
    expect((await first).status).toBe(201);
    expect((await fetch(url, init)).headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor('slow')).toBe(1);
  });
});

describe('a handler that fails', () => {
  it('rolls a 5xx answer back with its writes, stores nothing, and the retry runs again', async () => {
    const url = `${await serve((app) =>
      app.post('/charges', chargeRoute(t.db, (n) => (n === 1 ? { status: 503, body: { error: 'bank down' } } : { status: 201, body: { n } }))),
    )}/charges`;
    const init = json({ ref: 'five-oh-three' }, { 'idempotency-key': 'five-oh-three' });
    const failed = await fetch(url, init);
    expect(failed.status).toBe(503);
    expect(await failed.json()).toEqual({ error: 'bank down' });
    expect(await chargesFor('five-oh-three')).toBe(0);
    expect(await keysFor('five-oh-three')).toHaveLength(0);

    const retried = await fetch(url, init);
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    expect((await fetch(url, init)).headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor('five-oh-three')).toBe(1);
  });

  it('rolls back a handler that throws after writing: nothing committed, the retry runs again and succeeds once', async () => {
    await stockUp(t.db, 'sku-throw', 5);
    let failNext = true;
    const url = `${await serve((app) =>
      app.use(
        paymentsApp(t.db, {}, {
          afterWrites: () => {
            if (failNext) {
              failNext = false;
              throw new Error('card network timeout');
            }
          },
        }),
      ),
    )}/payments`;
    const init = json({ amount: 500, sku: 'sku-throw', ref: 'thrown' }, { 'idempotency-key': 'thrown', 'x-customer': 'alice' });
    const failed = await fetch(url, init);
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ error: 'card network timeout' });
    expect(await chargesFor('thrown')).toBe(0);
    expect(await count(t.pool, 'stock', "sku = 'sku-throw' and quantity = 5")).toBe(1);
    expect(await keysFor('thrown')).toHaveLength(0);

    const retried = await fetch(url, init);
    const again = await fetch(url, init);
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor('thrown')).toBe(1);
    expect(await count(t.pool, 'stock', "sku = 'sku-throw' and quantity = 4")).toBe(1);
  });

  it('answers 503 IDEMPOTENCY_COMMIT_FAILED, never a 2xx, when COMMIT fails after the handler', async () => {
    // A deferred constraint is checked at COMMIT: the handler succeeds, the commit does not.
    await t.pool.query('create table ledger (entry int, constraint ledger_entry_unique unique (entry) deferrable initially deferred)');
    const url = `${await serve((app) =>
      app.post(
        '/ledger',
        idempotent(t.db, async (_req, tx) => {
          await tx.execute(sql`insert into ledger (entry) values (1), (1)`);
          return { status: 201, body: { ok: true } };
        }, { scope: 'ledger-tenant' }),
      ),
    )}/ledger`;
    const res = await fetch(url, json({}, { 'idempotency-key': 'doomed' }));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_COMMIT_FAILED', retryable: true });
    expect(await count(t.pool, 'ledger')).toBe(0);
    expect(await keysFor('doomed')).toHaveLength(0);
  });

  it('rolls back, with or without a key, a body that cannot be sent as JSON', async () => {
    const url = `${await serve((app) =>
      app.post('/charges', chargeRoute(t.db, () => ({ status: 201, body: { amount: 10n } }), { required: false })),
    )}/charges`;
    for (const headers of [{ 'idempotency-key': 'bigint' }, {}] as Record<string, string>[]) {
      const res = await fetch(url, json({ ref: 'bigint' }, headers));
      expect(res.status).toBe(500);
      expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_RESULT_INVALID', retryable: false });
    }
    expect(await chargesFor('bigint')).toBe(0);
    expect(await keysFor('bigint')).toHaveLength(0);
  });

  it.each([
    ['a NUL in an object key', { 'a\u0000b': 1 }],
    ['a lone surrogate in a string', { name: 'caf\ud800' }],
    ['a Map, which JSON writes as {}', { byId: new Map([[1, 'a']]) }],
  ])('answers 500 IDEMPOTENCY_RESULT_INVALID, not retryable, to a body that cannot be stored as it is (%s), and commits nothing', async (what, body) => {
    const ref = `jsonb-${what.length}`;
    const url = `${await serve((app) => app.post('/charges', chargeRoute(t.db, () => ({ status: 201, body }))))}/charges`;
    const res = await fetch(url, json({ ref }, { 'idempotency-key': ref }));
    expect(res.status).toBe(500);
    expect(res.headers.get('retry-after')).toBeNull();
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_RESULT_INVALID', retryable: false });
    expect(await chargesFor(ref)).toBe(0);
    expect(await keysFor(ref)).toHaveLength(0);
  });

  it.each<[string, () => Awaited<ReturnType<IdempotentHandler<Tx>>>]>([
    ['a header value with a lone surrogate', () => ({ status: 201, headers: { 'x-note': 'caf\ud800' } })],
    ['a header value with a newline', () => ({ status: 201, headers: { 'x-note': 'a\r\nset-cookie: x=1' } })],
    ['a header name that is not a token', () => ({ status: 201, headers: { 'bad name': 'v' } })],
    ['a status outside 200 to 599', () => ({ status: 700 })],
    ['no response at all', () => undefined as never],
  ])('answers 500 IDEMPOTENCY_RESULT_INVALID to a response with %s, and commits nothing', async (what, respond) => {
    const ref = `bad-response-${what.replaceAll(' ', '-')}`;
    const url = `${await serve((app) => app.post('/charges', chargeRoute(t.db, respond)))}/charges`;
    const res = await fetch(url, json({ ref }, { 'idempotency-key': ref }));
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_RESULT_INVALID', retryable: false });
    expect(await chargesFor(ref)).toBe(0);
    expect(await keysFor(ref)).toHaveLength(0);
  });

  it.each([408, 425, 429])('rolls a %i answer back by default and stores nothing: the retry runs again', async (status) => {
    const ref = `not-final-${status}`;
    const url = `${await serve((app) =>
      app.post('/charges', chargeRoute(t.db, (n) => (n === 1 ? { status, body: { error: 'later' }, headers: { 'retry-after': '1' } } : { status: 201, body: { n } }))),
    )}/charges`;
    const init = json({ ref }, { 'idempotency-key': ref });
    const first = await fetch(url, init);
    expect(first.status).toBe(status);
    expect(first.headers.get('retry-after')).toBe('1');
    expect(await chargesFor(ref)).toBe(0);
    expect(await keysFor(ref)).toHaveLength(0);

    const retried = await fetch(url, init);
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    expect(await chargesFor(ref)).toBe(1);
  });

  it('stores nothing for a 4xx that isFinal declines', async () => {
    const url = `${await serve((app) =>
      app.post('/charges', chargeRoute(t.db, () => ({ status: 400, body: { error: 'try again' } }), { isFinal: (s) => s < 400 })),
    )}/charges`;
    const init = json({ ref: 'not-final' }, { 'idempotency-key': 'not-final' });
    expect((await fetch(url, init)).status).toBe(400);
    expect((await fetch(url, init)).headers.get('idempotent-replayed')).toBeNull();
    expect(await chargesFor('not-final')).toBe(0);
    expect(await keysFor('not-final')).toHaveLength(0);
  });
});

describe('the default fingerprint', () => {
  /** A route that charges `x-ref` and answers with the body it saw (raw bytes as text). */
  function echoRoute(options: Partial<IdempotentRouteOptions> = {}) {
    return idempotent(
      t.db,
      async (req, tx) => {
        await insertCharge(tx, req.get('x-ref') ?? 'echo', 100);
        const body: unknown = req.body;
        return { status: 200, body: { saw: Buffer.isBuffer(body) ? `bytes:${body.toString('utf8')}` : (body ?? null) } };
      },
      { scope: 'echo-tenant', ...options },
    );
  }
  const send = (url: string, key: string, ref: string, body: string | undefined, type = 'application/json', method = 'POST') =>
    fetch(url, {
      method,
      headers: { 'idempotency-key': key, 'x-ref': ref, ...(body === undefined ? {} : { 'content-type': type }) },
      ...(body === undefined ? {} : { body }),
    });

  it('answers 422 to the same key with another query string (?to=mallory after ?to=alice), and changes nothing', async () => {
    const url = `${await serve((app) => app.post('/transfers', echoRoute()))}/transfers`;
    expect((await send(`${url}?to=alice`, 'query-1', 'query', '{"amount":5}')).status).toBe(200);
    const other = await send(`${url}?to=mallory`, 'query-1', 'query', '{"amount":5}');
    expect(other.status).toBe(422);
    expect(await other.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    const none = await send(url, 'query-1', 'query', '{"amount":5}');
    expect(none.status).toBe(422);
    expect((await send(`${url}?to=alice`, 'query-1', 'query', '{"amount":5}')).headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor('query')).toBe(1);
  });

  it('answers 422 to a merge-patch body express.json() did not parse (PATCH {"limit":10}, then {"limit":99999})', async () => {
    const url = `${await serve((app) => app.patch('/accounts/1', echoRoute()))}/accounts/1`;
    const first = await send(url, 'merge-1', 'merge', '{"limit":10}', 'application/merge-patch+json', 'PATCH');
    expect(first.status).toBe(200);
    // The handler gets the bytes as received, since nothing parsed them.
    expect(await first.json()).toEqual({ saw: 'bytes:{"limit":10}' });
    const other = await send(url, 'merge-1', 'merge', '{"limit":99999}', 'application/merge-patch+json', 'PATCH');
    expect(other.status).toBe(422);
    const same = await send(url, 'merge-1', 'merge', '{"limit":10}', 'application/merge-patch+json', 'PATCH');
    expect(same.headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor('merge')).toBe(1);
  });

  it('answers 422 to another text body, and to no body, after a text body', async () => {
    const url = `${await serve((app) => app.post('/notes', echoRoute()))}/notes`;
    expect((await send(url, 'text-1', 'text', 'pay alice', 'text/plain')).status).toBe(200);
    expect((await send(url, 'text-1', 'text', 'pay mallory', 'text/plain')).status).toBe(422);
    expect((await send(url, 'text-1', 'text', undefined)).status).toBe(422);
    expect(await chargesFor('text')).toBe(1);
  });

  it('tells no body apart from an empty JSON object', async () => {
    const url = `${await serve((app) => app.post('/things', echoRoute()))}/things`;
    expect((await send(url, 'empty-1', 'empty', undefined)).status).toBe(200);
    expect((await send(url, 'empty-1', 'empty', '{}')).status).toBe(422);
    expect((await send(url, 'empty-1', 'empty', undefined)).headers.get('idempotent-replayed')).toBe('true');
  });

  it('answers 422 to raw bytes that differ, as express.raw() gives them', async () => {
    const url = `${await serve((app) => app.post('/blobs', express.raw({ type: 'application/octet-stream' }), echoRoute()))}/blobs`;
    expect((await send(url, 'raw-1', 'raw', 'AAAA', 'application/octet-stream')).status).toBe(200);
    expect((await send(url, 'raw-1', 'raw', 'AAAB', 'application/octet-stream')).status).toBe(422);
    expect((await send(url, 'raw-1', 'raw', 'AAAA', 'application/octet-stream')).headers.get('idempotent-replayed')).toBe('true');
  });

  it('answers 413 IDEMPOTENCY_BODY_TOO_LARGE to an unparsed body over maxBodyBytes: nothing claimed, nothing run', async () => {
    let runs = 0;
    const url = `${await serve((app) =>
      app.post('/uploads', (_req, _res, next) => (runs++, next()), echoRoute({ maxBodyBytes: 1024 })),
    )}/uploads`;
    const before = await keyRows(t.pool);
    const res = await send(url, 'big-1', 'big', 'x'.repeat(2048), 'text/plain');
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_BODY_TOO_LARGE', retryable: false });
    expect(runs).toBe(1);
    expect(await chargesFor('big')).toBe(0);
    expect(await keyRows(t.pool)).toEqual(before);
    // Within the bound it is read and hashed.
    expect((await send(url, 'big-2', 'big', 'x'.repeat(1024), 'text/plain')).status).toBe(200);
  });

  it('fails closed with 500 IDEMPOTENCY_BODY_UNREADABLE when a middleware consumed the body and left no parsed value', async () => {
    const url = `${await serve((app) =>
      app.post(
        '/audited',
        // Reads the body for its own purpose and leaves req.body unset.
        (req, _res, next) => {
          req.on('data', () => {});
          req.on('end', () => next());
        },
        echoRoute(),
      ),
    )}/audited`;
    const before = await keyRows(t.pool);
    for (const body of ['{"limit":10}', '{"limit":99999}']) {
      const res = await send(url, 'consumed-1', 'consumed', body, 'text/plain');
      expect(res.status).toBe(500);
      expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_BODY_UNREADABLE', retryable: false });
    }
    expect(await chargesFor('consumed')).toBe(0);
    expect(await keyRows(t.pool)).toEqual(before);
  });

  it('keeps the route in every fingerprint: the same key on another path gets 422, also with fingerprint: false or a custom one', async () => {
    for (const [name, fingerprint] of [
      ['off', false],
      ['custom', () => ({ tenantPlan: 'gold' })],
    ] as const) {
      const url = await serve((app) => {
        app.post('/a', echoRoute({ fingerprint }));
        app.post('/b', echoRoute({ fingerprint }));
      });
      const key = `route-${name}`;
      expect((await send(`${url}/a`, key, key, '{"n":1}')).status).toBe(200);
      const other = await send(`${url}/b`, key, key, '{"n":1}');
      expect(other.status).toBe(422);
      expect(other.headers.get('idempotent-replayed')).toBeNull();
      // The body is not compared when the option says so.
      expect((await send(`${url}/a`, key, key, '{"n":2}')).headers.get('idempotent-replayed')).toBe('true');
      expect(await chargesFor(key)).toBe(1);
    }
  });
});

describe('sending after COMMIT', () => {
  it('answers a content-type Express could not format (text csv) the same on the first execution and on replays', async () => {
    const url = `${await serve((app) =>
      app.post('/reports', chargeRoute(t.db, () => ({ status: 201, body: 'id;amount\n1;100\n', headers: { 'content-type': 'text csv' } }))),
    )}/reports`;
    const init = json({ ref: 'odd-type' }, { 'idempotency-key': 'odd-type' });
    const first = await fetch(url, init);
    const replay = await fetch(url, init);
    for (const res of [first, replay]) {
      expect(res.status).toBe(201);
      expect(await res.text()).toBe('id;amount\n1;100\n');
    }
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor('odd-type')).toBe(1);
  });

  it('never says "nothing was stored" when sending fails after COMMIT: the error goes to next, and the retry replays', async () => {
    let failNextEnd = false;
    const url = `${await serve((app) => {
      // A response pipeline that fails once, after the route committed (a broken compression or logging wrapper).
      app.use((_req, res, next) => {
        const end = res.end.bind(res) as (...args: unknown[]) => express.Response;
        res.end = ((...args: unknown[]) => {
          if (failNextEnd) {
            failNextEnd = false;
            throw new Error('the socket went away');
          }
          return end(...args);
        }) as typeof res.end;
        next();
      });
      app.post('/charges', chargeRoute(t.db, () => ({ status: 201, body: { ok: true } })));
    })}/charges`;
    const init = json({ ref: 'send-fails' }, { 'idempotency-key': 'send-fails' });
    failNextEnd = true;
    const failed = await fetch(url, init);
    expect(failed.status).toBe(500);
    const body = (await failed.json()) as { error: string; code?: string };
    expect(body.code).not.toBe('IDEMPOTENCY_COMMIT_FAILED');
    expect(body.error).toMatch(/committed/);
    expect(body.error).not.toMatch(/nothing was stored/);
    expect(await keysFor('send-fails')).toMatchObject([{ status: 'completed' }]);
    expect(await chargesFor('send-fails')).toBe(1);

    const retried = await fetch(url, init);
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor('send-fails')).toBe(1);
  });
});

describe('a handler that writes to res itself', () => {
  /** What the handler saw when it tried to write: the error, and whether anything had left. */
  interface Attempt {
    error: unknown;
    headersSent: boolean;
    writableEnded: boolean;
  }

  /** A route whose handler charges, tries `write(res)`, swallows the error, and answers 201. */
  function writingRoute(write: (res: express.Response) => unknown, attempts: Attempt[], options: Partial<IdempotentRouteOptions> = {}) {
    return idempotent(
      t.db,
      async (req, tx) => {
        await insertCharge(tx, (req.body as { ref: string }).ref, 100);
        const res = req.res!;
        let error: unknown;
        try {
          write(res);
        } catch (e) {
          error = e;
        }
        attempts.push({ error, headersSent: res.headersSent, writableEnded: res.writableEnded });
        return { status: 201, body: { ok: true } };
      },
      { scope: 'writers', ...options },
    );
  }

  it.each<[string, (res: express.Response) => unknown]>([
    ['res.json()', (res) => res.status(201).json({ early: true })],
    ['res.send()', (res) => res.send('early')],
    ['res.end()', (res) => res.end()],
    ['res.write()', (res) => res.write('early')],
    ['res.writeHead()', (res) => res.writeHead(201)],
    ['res.setHeader()', (res) => res.setHeader('x-early', '1')],
    ['res.set()', (res) => res.set('x-early', '1')],
    ['res.status()', (res) => res.status(201)],
    ['res.sendStatus()', (res) => res.sendStatus(201)],
    ['res.redirect()', (res) => res.redirect('/elsewhere')],
    ['res.cookie()', (res) => res.cookie('session', 'x')],
    ['res.flushHeaders()', (res) => res.flushHeaders()],
    // These send from a file system callback: they must throw at the call, not in that callback.
    ['res.sendFile()', (res) => res.sendFile(fileURLToPath(new URL('../../package.json', import.meta.url)))],
    ['res.download()', (res) => res.download(fileURLToPath(new URL('../../package.json', import.meta.url)))],
    ['res.render()', (res) => res.render('any-view')],
  ])('makes %s throw at once, sends nothing before COMMIT, and rolls the handler back even when it swallows the error', async (what, write) => {
    const ref = `writes-${what}`;
    const attempts: Attempt[] = [];
    const url = `${await serve((app) => app.post('/charges', writingRoute(write, attempts)))}/charges`;
    const res = await fetch(url, json({ ref }, { 'idempotency-key': ref }));
    expect(attempts).toHaveLength(1);
    expect(attempts[0]!.error).toBeInstanceOf(Error);
    expect(String(attempts[0]!.error)).toMatch(/must return its response/);
    // Nothing left the server while the transaction was open.
    expect(attempts[0]).toMatchObject({ headersSent: false, writableEnded: false });
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ error: expect.stringMatching(/must return its response/) });
    expect(await chargesFor(ref)).toBe(0);
    expect(await keysFor(ref)).toHaveLength(0);
  });

  it('rolls back a handler that lets the write error escape, with or without a key', async () => {
    const url = `${await serve((app) =>
      app.post(
        '/charges',
        idempotent(
          t.db,
          async (req, tx) => {
            await insertCharge(tx, 'escapes', 100);
            req.res!.status(201).json({ early: true });
            return { status: 201 };
          },
          { scope: 'writers', required: false },
        ),
      ),
    )}/charges`;
    for (const headers of [{ 'idempotency-key': 'escapes' }, {}] as Record<string, string>[]) {
      const res = await fetch(url, json({}, headers));
      expect(res.status).toBe(500);
    }
    expect(await chargesFor('escapes')).toBe(0);
    expect(await keysFor('escapes')).toHaveLength(0);
  });

  it('rolls back a keyless run (key optional) that writes to res', async () => {
    const attempts: Attempt[] = [];
    const url = `${await serve((app) => app.post('/charges', writingRoute((res) => res.json({ early: true }), attempts, { required: false })))}/charges`;
    const res = await fetch(url, json({ ref: 'keyless-writer' }));
    expect(res.status).toBe(500);
    expect(attempts[0]).toMatchObject({ headersSent: false, writableEnded: false });
    expect(await chargesFor('keyless-writer')).toBe(0);
  });

  it('lets other middleware answer while the handler runs (a timeout answering 503) without throwing, and rolls the handler back', async () => {
    const entered = deferred();
    const release = deferred();
    let captured: express.Response | undefined;
    const url = `${await serve((app) => {
      app.use((_req, res, next) => ((captured = res), next()));
      app.post(
        '/charges',
        chargeRoute(t.db, async () => {
          entered.resolve();
          await release.promise;
          return { status: 201, body: { ok: true } };
        }),
      );
    })}/charges`;
    const init = json({ ref: 'timed-out' }, { 'idempotency-key': 'timed-out' });
    const first = fetch(url, init);
    await entered.promise;
    // As a timeout middleware's timer would, from outside the handler.
    captured!.status(503).json({ error: 'timeout' });
    release.resolve();
    const res = await first;
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: 'timeout' });
    // The client was told it failed, so nothing of it committed; the retry runs it.
    expect(await chargesFor('timed-out')).toBe(0);
    expect(await keysFor('timed-out')).toHaveLength(0);
    const retried = await fetch(url, init);
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    expect(await chargesFor('timed-out')).toBe(1);
  });

  it('gives res back afterwards: the route answers through wrappers other middleware installed', async () => {
    let wrappedEnds = 0;
    const url = `${await serve((app) => {
      // As compression and logging middleware do: own-property wrappers on res.
      app.use((_req, res, next) => {
        const end = res.end.bind(res) as (...args: unknown[]) => express.Response;
        res.end = ((...args: unknown[]) => (wrappedEnds++, end(...args))) as typeof res.end;
        next();
      });
      app.post('/charges', chargeRoute(t.db, () => ({ status: 201, body: { ok: true } })));
    })}/charges`;
    const init = json({ ref: 'wrapped' }, { 'idempotency-key': 'wrapped' });
    expect((await fetch(url, init)).status).toBe(201);
    expect((await fetch(url, init)).headers.get('idempotent-replayed')).toBe('true');
    expect(wrappedEnds).toBe(2);
    expect(await chargesFor('wrapped')).toBe(1);
  });
});

describe('methods', () => {
  it('passes GET, PUT and DELETE through: the key is neither required nor stored', async () => {
    const url = await serve((app) => {
      const route = chargeRoute(t.db, () => ({ status: 200, body: { ran: true } }));
      app.put('/items', route);
      app.delete('/items', route);
      app.get('/items', idempotent(t.db, () => ({ body: { items: [] } }), { scope: 'items-tenant' }));
    });
    for (const method of ['PUT', 'DELETE']) {
      const init = json({ ref: `pass-${method}` }, { 'idempotency-key': `pass-${method}` }, method);
      expect((await fetch(`${url}/items`, init)).status).toBe(200);
      const again = await fetch(`${url}/items`, init);
      expect(again.status).toBe(200);
      expect(again.headers.get('idempotent-replayed')).toBeNull();
      expect(await chargesFor(`pass-${method}`)).toBe(2);
      expect(await keysFor(`pass-${method}`)).toHaveLength(0);
    }
    const get = await fetch(`${url}/items`);
    expect(get.status).toBe(200);
    expect(await get.json()).toEqual({ items: [] });
  });

  it('uses the key for PATCH', async () => {
    const url = `${await serve((app) => app.patch('/charges', chargeRoute(t.db, () => ({ status: 200 }))))}/charges`;
    expect((await fetch(url, json({ ref: 'patch' }, {}, 'PATCH'))).status).toBe(400);
    const init = json({ ref: 'patch' }, { 'idempotency-key': 'patch-1' }, 'PATCH');
    expect((await fetch(url, init)).status).toBe(200);
    expect((await fetch(url, init)).headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesFor('patch')).toBe(1);
  });
});

describe('the scope', () => {
  const handler: IdempotentHandler<TransactionOf<NodePgDatabase>> = async (req, tx) => {
    await insertCharge(tx, (req.body as { ref: string }).ref, 100);
    return { status: 201 };
  };

  it.each<[string, unknown]>([
    ['no options at all', undefined],
    ['options without a scope', { ttl: '1h' }],
    ['an empty fixed scope', { scope: '' }],
    ['a fixed scope with a lone surrogate', { scope: 'tenant-\ud800' }],
    ['a fixed scope with a control character', { scope: 'a\tb' }],
    ['a scope that is neither a string nor a function', { scope: 42 }],
  ])('refuses to build a route with %s, naming the fix', (_what, options) => {
    const build = () => idempotent(t.db, handler, options as IdempotentRouteOptions);
    expect(build).toThrow(IdempotencyOptionsInvalidError);
    expect(build).toThrow(/scope/);
  });

  it('takes a fixed string as the scope of a single-tenant service', async () => {
    const url = `${await serve((app) => app.post('/charges', idempotent(t.db, handler, { scope: 'single-tenant' })))}/charges`;
    const init = json({ ref: 'fixed-scope' }, { 'idempotency-key': 'fixed-scope' });
    expect((await fetch(url, init)).status).toBe(201);
    expect((await fetch(url, init)).headers.get('idempotent-replayed')).toBe('true');
    expect(await keysFor('fixed-scope')).toMatchObject([{ scope: 'single-tenant' }]);
    expect(await chargesFor('fixed-scope')).toBe(1);
  });

  it.each<[string, (req: express.Request) => unknown]>([
    ['undefined (the authentication middleware is missing)', (req) => (req as { user?: { id: string } }).user?.id],
    ['an empty string', () => ''],
    ['a number', () => 7],
    ['a string with a lone surrogate', () => 'tenant-\udc00'],
    ['a string over 255 characters', () => 's'.repeat(256)],
    ['a promise of undefined', async () => undefined],
  ])('answers 500 IDEMPOTENCY_OPTIONS_INVALID when the scope function returns %s: nothing claimed, nothing run', async (what, scope) => {
    const ref = `bad-scope-${what.length}`;
    let runs = 0;
    const route = idempotent(t.db, async (req, tx) => (runs++, handler(req, tx)), { scope: scope as (req: express.Request) => string });
    const url = `${await serve((app) => app.post('/charges', route))}/charges`;
    const before = await keyRows(t.pool);
    const res = await fetch(url, json({ ref }, { 'idempotency-key': ref }));
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID', retryable: false });
    expect(runs).toBe(0);
    expect(await chargesFor(ref)).toBe(0);
    expect(await keyRows(t.pool)).toEqual(before);
  });
});

describe('options', () => {
  const handler = () => ({ status: 200 });
  it.each<[string, Partial<IdempotentRouteOptions>]>([
    ['ttl', { ttl: 'forever' as never }],
    ['onInFlight', { onInFlight: 'maybe' as never }],
    ['methods', { methods: ['PO ST'] }],
    ['retryAfter', { retryAfter: -1 }],
    // Retry-After: 0 tells every client to retry at once, hot.
    ['retryAfter of 0 seconds', { retryAfter: 0 }],
    ['scope', { scope: 42 as never }],
  ])('rejects an invalid %s when the route is built', (_name, options) => {
    expect(() => idempotent(t.db, handler, { scope: 'tests', ...options })).toThrow(IdempotencyOptionsInvalidError);
  });

  it('rejects a transaction in place of the database: the route opens its own', async () => {
    await t.db.transaction(async (tx) => {
      expect(() => idempotent(tx, handler, { scope: 'tests' })).toThrow(IdempotencyOptionsInvalidError);
    });
  });
});
