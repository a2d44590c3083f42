// What a client puts in a workflow's input that PostgreSQL cannot store (a NUL,
// a lone surrogate, more JSON than maxResultBytes) is the request's fault: a 4xx
// that claims nothing and wakes nobody, not a 500 reported to onError. An input
// the application built wrong (a BigInt) stays the server's 500, and a
// fingerprint function that throws goes to the framework, as a throwing scope or input does.
import express from 'express';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { defineWorkflow } from '../../src/index.js';
import { idempotentWorkflow as expressWorkflow } from '../../src/express.js';
import { idempotentWorkflow as webWorkflow } from '../../src/web.js';
import { testDatabase } from '../support/db.js';
import { listen, type Listening } from '../support/http.js';
import { webListener } from '../support/web-server.js';

const t = await testDatabase({ max: 4 });
let runs = 0;
const note = defineWorkflow('input.note', async (_ctx, input: { note: string }) => {
  runs++;
  return { status: 201, body: input };
}, { maxResultBytes: 1024 });
const reported: unknown[] = [];
const options = { scope: 'shop', onError: (error: unknown) => reported.push(error) };
const input = (req: { body?: unknown }) => req.body as { note: string };
const asBigInt = () => ({ note: 1n }) as never;

const fingerprint = () => {
  throw new Error('fingerprint: no customer on the request');
};

const app = express().use(express.json());
app.post('/notes', expressWorkflow(t.db, note, { ...options, input }));
app.post('/bigint', expressWorkflow(t.db, note, { ...options, input: asBigInt }));
app.post('/fingerprint', expressWorkflow(t.db, note, { ...options, input, fingerprint }));
// What reaches the framework's error handler (the Web listener answers thrown errors the same way).
app.use(((error, _req, res, _next) => void res.status(500).json({ error: (error as Error).message })) as express.ErrorRequestHandler);
const web: Record<string, (request: Request) => Promise<Response>> = {
  '/notes': webWorkflow(t.db, note, { ...options, input }),
  '/bigint': webWorkflow(t.db, note, { ...options, input: asBigInt }),
  '/fingerprint': webWorkflow(t.db, note, { ...options, input, fingerprint }),
};
const servers: Record<string, Listening> = {
  express: await listen(app),
  web: await listen(webListener((request) => web[new URL(request.url).pathname]!(request))),
};
afterAll(() => Promise.all(Object.values(servers).map((s) => s.close())));

beforeEach(async () => {
  runs = 0;
  reported.length = 0;
  await t.pool.query('delete from idempotency_keys');
});

const post = async (url: string, key: string, body: string) => {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body });
  return { status: response.status, retryAfter: response.headers.get('retry-after'), problem: (await response.json()) as { code?: string; retryable?: boolean; error?: string } };
};
const keysStored = async () => Number((await t.pool.query<{ n: string }>('select count(*) as n from idempotency_keys')).rows[0]!.n);

describe.each(Object.keys(servers))('idempotentWorkflow on %s', (name) => {
  const url = (path: string) => `${servers[name]!.url}${path}`;

  it.each([
    ['a lone surrogate', String.raw`{"note":"\ud800"}`],
    ['a NUL', String.raw`{"note":"a\u0000b"}`],
    ['a lone surrogate in a member name', String.raw`{"note":{"\udfff":1}}`],
  ])('answers 400 to an input holding %s, claims nothing and reports nothing', async (_what, body) => {
    const answer = await post(url('/notes'), 'k1', body);

    expect(answer).toMatchObject({ status: 400, problem: { code: 'IDEMPOTENCY_BODY_UNREADABLE', retryable: false } });
    expect(reported).toEqual([]);
    expect(runs).toBe(0);
    expect(await keysStored()).toBe(0);
  });

  it('answers 413 to an input over maxResultBytes, claims nothing and reports nothing', async () => {
    const answer = await post(url('/notes'), 'k2', JSON.stringify({ note: 'x'.repeat(2000) }));

    expect(answer).toMatchObject({ status: 413, problem: { code: 'IDEMPOTENCY_BODY_TOO_LARGE', retryable: false } });
    expect(reported).toEqual([]);
    expect(runs).toBe(0);
    expect(await keysStored()).toBe(0);
  });

  it('still answers 500 and reports an input the application built that JSON cannot hold (a BigInt)', async () => {
    const answer = await post(url('/bigint'), 'k3', '{}');

    expect(answer).toMatchObject({ status: 500, problem: { code: 'IDEMPOTENCY_OPTIONS_INVALID' } });
    expect(reported).toHaveLength(1);
    expect(runs).toBe(0);
    expect(await keysStored()).toBe(0);
  });

  it('sends a fingerprint function that throws to the framework, as a scope or an input that throws: nothing claimed, no 503 that invites retries', async () => {
    const answer = await post(url('/fingerprint'), 'k4', '{"note":"hello"}');

    expect(answer).toEqual({ status: 500, retryAfter: null, problem: { error: 'fingerprint: no customer on the request' } });
    expect(reported).toEqual([]);
    expect(runs).toBe(0);
    expect(await keysStored()).toBe(0);
  });
});
