// What only the Fastify adapter does: how it finds the Idempotency-Key on the
// requests Fastify serves besides HTTP/1.1 (app.inject(), HTTP/2). (What every
// adapter does is in conformance.test.ts.) Real PostgreSQL.
import { once } from 'node:events';
import { connect as http2Connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { idempotent } from '../../src/fastify.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);
const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => Promise.all(closers.map((close) => close())));

/** A payment route: one charge per run, its id in the answer. */
function app() {
  const fastify = Fastify();
  fastify.post(
    '/payments',
    idempotent(t.db, async (req, tx) => ({ status: 201, body: await insertCharge(tx, (req.body as { ref: string }).ref, 1) }), { scope: 'fastify-tenant' }),
  );
  closers.push(() => fastify.close());
  return fastify;
}
const chargesFor = (ref: string) => count(t.pool, 'charges', 'ref = $1', [ref]);
const keysFor = async (key: string) => (await keyRows(t.pool)).filter((k) => k.key === key);

describe('the Fastify adapter\'s key', () => {
  it('is read under app.inject(), as Fastify\'s own tests send requests: the retry replays, a key sent twice is 400', async () => {
    const fastify = app();
    const inject = (headers: Record<string, string | string[]>) =>
      fastify.inject({ method: 'POST', url: '/payments', headers: { 'content-type': 'application/json', ...headers }, payload: '{"ref":"inject"}' });
    const first = await inject({ 'idempotency-key': 'inject-1' });
    const retry = await inject({ 'idempotency-key': 'inject-1' });
    expect([first.statusCode, retry.statusCode, retry.headers['idempotent-replayed']]).toEqual([201, 201, 'true']);
    expect(retry.json()).toEqual(first.json());
    const missing = await inject({});
    const twice = await inject({ 'idempotency-key': ['inject-a', 'inject-b'] });
    for (const res of [missing, twice]) {
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_INVALID' });
    }
    expect(await chargesFor('inject')).toBe(1);
    expect(await keysFor('inject-1')).toMatchObject([{ status: 'completed' }]);
  });

  it('is read over HTTP/2: the retry replays and the handler runs once', async () => {
    // Typed for an HTTP/2 server without a cast.
    const fastify = Fastify({ http2: true });
    fastify.post(
      '/payments',
      idempotent(t.db, async (req, tx) => ({ status: 201, body: await insertCharge(tx, (req.body as { ref: string }).ref, 1) }), { scope: 'fastify-tenant' }),
    );
    closers.push(() => fastify.close());
    await fastify.listen({ port: 0, host: '127.0.0.1' });
    const client = http2Connect(`http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}`);
    closers.push(async () => client.close());
    const post = async () => {
      const stream = client.request({ ':method': 'POST', ':path': '/payments', 'content-type': 'application/json', 'idempotency-key': 'h2-1' });
      stream.end('{"ref":"h2"}');
      const [headers] = (await once(stream, 'response')) as [Record<string, string | number>];
      let body = '';
      for await (const chunk of stream) body += String(chunk);
      return { status: headers[':status'], replayed: headers['idempotent-replayed'], body };
    };
    const first = await post();
    const retry = await post();
    expect([first.status, retry.status, retry.replayed]).toEqual([201, 201, 'true']);
    expect(retry.body).toBe(first.body);
    expect(await chargesFor('h2')).toBe(1);
  });
});

describe('the Fastify adapter and other code that answers', () => {
  it('rolls the handler back when a timeout answered 504 while it ran: nothing charged, nothing stored, the retry runs it', async () => {
    const fastify = Fastify();
    let slow = true;
    fastify.addHook('onRequest', async (_req, reply) => {
      setTimeout(() => void (reply.sent || reply.code(504).send({ error: 'timeout' })), 50).unref();
    });
    fastify.post(
      '/payments',
      idempotent(t.db, async (_req, tx) => {
        const charge = await insertCharge(tx, 'timed-out', 1);
        if (slow) await new Promise((resolve) => setTimeout(resolve, 200));
        return { status: 201, body: charge };
      }, { scope: 'fastify-tenant' }),
    );
    closers.push(() => fastify.close());
    const inject = () => fastify.inject({ method: 'POST', url: '/payments', headers: { 'idempotency-key': 'timed-out' } });
    expect((await inject()).statusCode).toBe(504);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await chargesFor('timed-out')).toBe(0);
    expect(await keysFor('timed-out')).toEqual([]);
    slow = false;
    const retry = await inject();
    expect([retry.statusCode, retry.headers['idempotent-replayed']]).toEqual([201, undefined]);
    expect(await chargesFor('timed-out')).toBe(1);
  });
});

describe('the Fastify adapter\'s handler', () => {
  it('is called without a this: a function handler reaching for this.db (a Fastify decorator habit) cannot get the database outside its transaction', async () => {
    const fastify = Fastify();
    const seen: unknown[] = [];
    fastify.post(
      '/payments',
      idempotent(t.db, async function (this: unknown) {
        seen.push(this);
        return { status: 201, body: { ok: true } };
      }, { scope: 'fastify-tenant' }),
    );
    closers.push(() => fastify.close());
    const res = await fastify.inject({ method: 'POST', url: '/payments', headers: { 'idempotency-key': 'this-less' } });
    expect(res.statusCode).toBe(201);
    expect(seen).toEqual([undefined]);
  });
});
