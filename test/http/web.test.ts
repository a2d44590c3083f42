// What only the Web-standard adapter does: it reads the body itself, once.
// (What every adapter does is in conformance.test.ts.) Its interface is
// Request -> Response, so these tests call it with Requests; real PostgreSQL.
import { afterAll, describe, expect, it } from 'vitest';
import { idempotent, type IdempotentWebRequest } from '../../src/web.js';
import { IdempotencyOptionsInvalidError } from '../../src/shared/errors.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

const seen: { body: unknown; bytes: Uint8Array | undefined }[] = [];
afterAll(() => void seen.splice(0));

/** Records what the handler got, and one charge per run. */
const handler = idempotent(
  t.db,
  async (req: IdempotentWebRequest, tx) => {
    seen.push({ body: req.body, bytes: req.bytes });
    await insertCharge(tx, 'web', 1);
    return { status: 201, body: { got: req.body instanceof Uint8Array ? 'bytes' : req.body } };
  },
  { scope: 'web-tenant', maxBodyBytes: 64 },
);

const request = (key: string, body: RequestInit['body'], type?: string, method = 'POST') =>
  new Request('http://shop.test/payments?x=1', {
    method,
    headers: { 'idempotency-key': key, ...(type === undefined ? {} : { 'content-type': type }) },
    body,
  });
const keysFor = async (key: string) => (await keyRows(t.pool)).filter((k) => k.key === key);

describe('the Web adapter\'s body', () => {
  it('gives the handler JSON parsed, text as a string and anything else as bytes', async () => {
    const answers = [
      await handler(request('w-json', '{"amount":5}', 'application/json')),
      await handler(request('w-merge', '{"limit":10}', 'application/merge-patch+json')),
      await handler(request('w-text', 'hello', 'text/plain; charset=utf-8')),
      await handler(request('w-bytes', new Uint8Array([1, 2, 3]), 'application/octet-stream')),
    ];
    expect(await Promise.all(answers.map((res) => res.json()))).toEqual([
      { got: { amount: 5 } },
      { got: { limit: 10 } },
      { got: 'hello' },
      { got: 'bytes' },
    ]);
    expect([...seen.at(-1)!.bytes!]).toEqual([1, 2, 3]);
  });

  it('fingerprints the bytes as received: the same JSON spelled otherwise is another request (422)', async () => {
    expect((await handler(request('w-spelling', '{"a":1}', 'application/json'))).status).toBe(201);
    const respelled = await handler(request('w-spelling', '{ "a": 1 }', 'application/json'));
    expect(respelled.status).toBe(422);
    expect(await respelled.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    const same = await handler(request('w-spelling', '{"a":1}', 'application/json'));
    expect([same.status, same.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect(await keysFor('w-spelling')).toHaveLength(1);
  });

  it('answers 400 IDEMPOTENCY_BODY_UNREADABLE to a body that is not the JSON its content-type says: nothing claimed, nothing run', async () => {
    const before = seen.length;
    const res = await handler(request('w-broken', '{"amount":', 'application/json'));
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_BODY_UNREADABLE', retryable: false });
    expect(seen.length).toBe(before);
    expect(await keysFor('w-broken')).toEqual([]);
  });

  it('answers 500 IDEMPOTENCY_BODY_UNREADABLE to a body read before the route, never treating it as no body', async () => {
    const req = request('w-used', '{"amount":5}', 'application/json');
    await req.text();
    const res = await handler(req);
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_BODY_UNREADABLE' });
    expect(await keysFor('w-used')).toEqual([]);
  });

  it('answers 413 IDEMPOTENCY_BODY_TOO_LARGE to a streamed body over maxBodyBytes that declared no length', async () => {
    const chunks = [new Uint8Array(40), new Uint8Array(40)];
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const chunk = chunks.shift();
        if (chunk) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const before = await count(t.pool, 'charges');
    const res = await handler(new Request('http://shop.test/payments', { method: 'POST', headers: { 'idempotency-key': 'w-stream' }, body: stream, duplex: 'half' } as RequestInit));
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_BODY_TOO_LARGE' });
    expect(await count(t.pool, 'charges')).toBe(before);
    expect(await keysFor('w-stream')).toEqual([]);
  });

  it('reads the body of a request that passes through (PUT) for the handler too, and stores no key', async () => {
    const res = await handler(request('w-put', '{"amount":7}', 'application/json', 'PUT'));
    expect([res.status, await res.json()]).toEqual([201, { got: { amount: 7 } }]);
    expect(await keysFor('w-put')).toEqual([]);
  });
});

describe('the Web adapter\'s options', () => {
  it('refuses an expiryHeader that is not a boolean while the route is built', () => {
    expect(() => idempotent(t.db, async () => ({ status: 200 }), { scope: 's', expiryHeader: 'yes' as unknown as boolean })).toThrow(IdempotencyOptionsInvalidError);
  });
});

describe('the Web adapter\'s answers', () => {
  const answering = (response: { status: number; body?: unknown; headers?: Record<string, string> }) =>
    idempotent(t.db, async () => response, { scope: 'web-answers', storedHeaders: ['content-type', 'x-kept'] });

  it('sends a 204 without a body or content-type, the same on the replay', async () => {
    const handle = answering({ status: 204, body: { ignored: true }, headers: { 'content-type': 'application/json', 'x-kept': 'yes' } });
    for (const replayed of [null, 'true']) {
      const res = await handle(request('w-204', null));
      expect([res.status, res.headers.get('content-type'), res.headers.get('x-kept'), res.headers.get('idempotent-replayed')]).toEqual([204, null, 'yes', replayed]);
      expect(await res.text()).toBe('');
    }
  });

  it('sends a string under a content-type that is not JSON as UTF-8 text, the same on the replay', async () => {
    const handle = answering({ status: 200, body: 'sku,qty\nmug,1\n', headers: { 'content-type': 'text/csv' } });
    for (const replayed of [null, 'true']) {
      const res = await handle(request('w-csv', null));
      expect([res.headers.get('content-type'), res.headers.get('idempotent-replayed'), await res.text()]).toEqual(['text/csv; charset=utf-8', replayed, 'sku,qty\nmug,1\n']);
    }
  });
});
