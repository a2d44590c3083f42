// Test 5 of the HTTP issue: fetchWithRetry against a scripted loopback server.
// Sleep and random are injected, so no test waits for a backoff.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { FetchRetryError, fetchWithRetry, fullJitterDelay, retryAfterMs, type FetchWithRetryOptions, type RetryEvent } from '../../src/client.js';
import { IdempotencyKeyInvalidError, IdempotencyOptionsInvalidError } from '../../src/shared/errors.js';
import { scriptedServer, type Step } from '../support/scripted-server.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ok: Step = { status: 201, body: '{"ok":true}', headers: { 'content-type': 'application/json' } };
const unavailable: Step = { status: 503 };

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

/** A server following `script`, and fetchWithRetry options that record sleeps instead of sleeping. */
async function setup(script: (n: number) => Step) {
  const server = await scriptedServer(script);
  close = server.close;
  const sleeps: number[] = [];
  const retries: RetryEvent[] = [];
  const options: FetchWithRetryOptions = {
    sleep: async (ms) => void sleeps.push(ms),
    onRetry: (event) => void retries.push(event),
  };
  const post = (extra: FetchWithRetryOptions = {}, init: RequestInit = {}) =>
    fetchWithRetry(`${server.url}/payments`, { method: 'POST', body: '{"amount":500}', ...init }, { ...options, ...extra });
  return { server, sleeps, retries, post };
}

describe('fullJitterDelay', () => {
  it('stays in [0, min(cap, base * 2^attempt)) for any random value', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 30 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
        const delay = fullJitterDelay(attempt, { baseMs: 500, capMs: 8000, random: () => r });
        const ceiling = Math.min(8000, 500 * 2 ** attempt);
        return delay >= 0 && delay < ceiling && Number.isInteger(delay);
      }),
    );
  });
});

describe('retryAfterMs', () => {
  it('reads delay-seconds and HTTP dates, measuring a date from the response Date', () => {
    expect(retryAfterMs('3')).toBe(3000);
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:05 GMT', 'Wed, 21 Oct 2015 07:28:00 GMT')).toBe(5000);
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT', 'Wed, 21 Oct 2015 07:28:05 GMT')).toBe(0);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
  });
});

describe('fetchWithRetry', () => {
  it('waits full-jitter delays, growing to the cap, and makes 1 + retries attempts', async () => {
    const { server, sleeps, post } = await setup(() => unavailable);
    const randoms = [0.5, 0.25, 0.999, 0.1, 0.999, 0.999];
    const res = await post({ retries: 6, random: () => randoms[server.seen.length - 1]! });
    expect(res.status).toBe(503);
    expect(res.attempts).toBe(7);
    expect(server.seen).toHaveLength(7);
    // random(0, min(8000, 500 * 2^attempt)) for attempts 0..5
    expect(sleeps).toEqual([250, 250, 1998, 400, 7992, 7992]); // the last would be 15984 uncapped
  });

  it('retries 4 times by default, never waiting past the default cap', async () => {
    const { server, sleeps, post } = await setup(() => unavailable);
    const res = await post({ random: () => 0.999999 });
    expect(res.attempts).toBe(5);
    expect(server.seen).toHaveLength(5);
    expect(sleeps).toHaveLength(4);
    sleeps.forEach((ms, attempt) => expect(ms).toBeLessThan(Math.min(8000, 500 * 2 ** attempt)));
  });

  it.each([400, 401, 403, 404, 422])('never retries %i', async (status) => {
    const { server, sleeps, post } = await setup(() => ({ status }));
    const res = await post();
    expect(res.status).toBe(status);
    expect(res.attempts).toBe(1);
    expect(server.seen).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('retries 503 until an answer comes, sending the same key and body on every attempt', async () => {
    const { server, retries, post } = await setup((n) => (n < 3 ? unavailable : ok));
    const res = await post();
    expect(res.status).toBe(201);
    expect(res.attempts).toBe(3);
    expect(await res.json()).toEqual({ ok: true });
    expect(retries.map((r) => [r.retry, r.reason, r.response?.status])).toEqual([
      [1, 'status', 503],
      [2, 'status', 503],
    ]);
    const keys = new Set(server.seen.map((r) => r.key));
    expect(keys.size).toBe(1);
    expect(res.idempotencyKey).toMatch(UUID);
    expect([...keys]).toEqual([res.idempotencyKey]);
    expect(server.seen.map((r) => r.body)).toEqual(Array(3).fill('{"amount":500}'));
  });

  it('retries network errors', async () => {
    const { server, retries, post } = await setup((n) => (n < 3 ? 'destroy' : ok));
    const res = await post();
    expect(res.status).toBe(201);
    expect(retries.map((r) => r.reason)).toEqual(['network', 'network']);
    expect(new Set(server.seen.map((r) => r.key)).size).toBe(1);
  });

  it('retries an attempt that times out', async () => {
    const { server, retries, post } = await setup((n) => (n === 1 ? 'hang' : ok));
    const res = await post({ timeout: 100 });
    expect(res.status).toBe(201);
    expect(retries.map((r) => r.reason)).toEqual(['timeout']);
    expect((retries[0]!.error as DOMException).name).toBe('TimeoutError');
    expect(server.seen).toHaveLength(2);
  });

  it('throws FetchRetryError, with the key to try again later, when no attempt got an answer', async () => {
    const { server, post } = await setup(() => 'destroy');
    const error = await post({ retries: 2 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FetchRetryError);
    expect(error).toMatchObject({ code: 'FETCH_RETRIES_EXHAUSTED', attempts: 3, idempotencyKey: server.seen[0]!.key });
    expect(server.seen).toHaveLength(3);
  });

  it('honours Retry-After in seconds on 429 and 503', async () => {
    const { sleeps, post } = await setup((n) =>
      n === 1 ? { status: 429, headers: { 'retry-after': '3' } } : n === 2 ? { status: 503, headers: { 'retry-after': '0' } } : ok,
    );
    const res = await post();
    expect(res.status).toBe(201);
    expect(sleeps).toEqual([3000, 0]);
  });

  it('honours Retry-After as an HTTP date, measured from the response Date header', async () => {
    const date = 'Wed, 21 Oct 2015 07:28:00 GMT';
    const { sleeps, post } = await setup((n) =>
      n === 1 ? { status: 503, headers: { date, 'retry-after': 'Wed, 21 Oct 2015 07:28:02 GMT' } } : ok,
    );
    await post();
    expect(sleeps).toEqual([2000]);
  });

  it('caps Retry-After at maxRetryAfter', async () => {
    const { sleeps, post } = await setup((n) => (n === 1 ? { status: 503, headers: { 'retry-after': '3600' } } : ok));
    await post({ maxRetryAfter: '10s' });
    expect(sleeps).toEqual([10_000]);
  });

  it('retries a 409 that says the key is in flight, and tells that the final answer is a replay', async () => {
    const inFlight = { status: 409, headers: { 'retry-after': '1', 'content-type': 'application/problem+json' }, body: '{"code":"IDEMPOTENCY_IN_FLIGHT"}' };
    const inFlightNoHeader = { ...inFlight, headers: { 'content-type': 'application/problem+json' } };
    const replay = { ...ok, headers: { ...ok.headers, 'idempotent-replayed': 'true' } };
    const { sleeps, post } = await setup((n) => (n === 1 ? inFlight : n === 2 ? inFlightNoHeader : replay));
    const res = await post({ random: () => 0.5 });
    expect(res.status).toBe(201);
    expect(res.replayed).toBe(true);
    expect(sleeps).toEqual([1000, 500]);
  });

  it('does not retry a 409 that is a business conflict', async () => {
    const { server, post } = await setup(() => ({ status: 409, headers: { 'content-type': 'application/json' }, body: '{"error":"out_of_stock"}' }));
    const res = await post();
    expect(res.status).toBe(409);
    expect(res.replayed).toBe(false);
    expect(await res.json()).toEqual({ error: 'out_of_stock' });
    expect(server.seen).toHaveLength(1);
  });

  it.each([500, 503, 409, 429])('returns a %i problem that says retryable: false at once, without retrying', async (status) => {
    const final = {
      status,
      headers: { 'retry-after': '1', 'content-type': 'application/problem+json' },
      body: JSON.stringify({ type: 'about:blank', status, code: 'IDEMPOTENCY_RESULT_INVALID', retryable: false }),
    };
    const { server, sleeps, post } = await setup((n) => (n === 1 ? final : ok));
    const res = await post();
    expect(res.status).toBe(status);
    expect(res.attempts).toBe(1);
    expect(await res.json()).toMatchObject({ retryable: false });
    expect(server.seen).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('retries a problem that says retryable: true, and a 5xx whose body is not a problem', async () => {
    const retryable = { status: 503, headers: { 'content-type': 'application/problem+json' }, body: '{"code":"IDEMPOTENCY_COMMIT_FAILED","retryable":true}' };
    const notAProblem = { status: 500, headers: { 'content-type': 'application/json' }, body: '{"retryable":false}' };
    const { server, post } = await setup((n) => (n === 1 ? retryable : n === 2 ? notAProblem : ok));
    const res = await post();
    expect(res.status).toBe(201);
    expect(server.seen).toHaveLength(3);
  });

  it('stops when the caller aborts during a wait', async () => {
    const server = await scriptedServer(() => unavailable);
    close = server.close;
    const controller = new AbortController();
    const attempt = fetchWithRetry(`${server.url}/payments`, { method: 'POST', signal: controller.signal }, {
      sleep: (_ms, signal) =>
        new Promise((_resolve, reject) => {
          signal!.addEventListener('abort', () => reject(signal!.reason));
          controller.abort();
        }),
    });
    await expect(attempt).rejects.toMatchObject({ name: 'AbortError' });
    expect(server.seen).toHaveLength(1);
  });

  it('stops when the caller aborts during an attempt, and sends nothing once aborted', async () => {
    const server = await scriptedServer(() => 'hang');
    close = server.close;
    const controller = new AbortController();
    const attempt = fetchWithRetry(`${server.url}/payments`, { method: 'POST', signal: controller.signal }, { sleep: async () => {} });
    while (server.seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    await expect(attempt).rejects.toMatchObject({ name: 'AbortError' });
    expect(server.seen).toHaveLength(1);

    await expect(fetchWithRetry(server.url, { method: 'POST', signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(server.seen).toHaveLength(1);
  });

  it('keeps a key the caller set, in either header form or as an option', async () => {
    const { server, post } = await setup((n) => (n % 2 === 1 ? unavailable : ok));
    await post({}, { headers: { 'idempotency-key': 'mine-1' } });
    await post({ idempotencyKey: 'mine-2' });
    await post({}, { headers: { 'Idempotency-Key': '"mine-3"' } });
    expect(server.seen.map((r) => r.key)).toEqual(['mine-1', 'mine-1', 'mine-2', 'mine-2', '"mine-3"', '"mine-3"']);
  });

  it('adds a key to POST and PATCH only', async () => {
    const { server } = await setup(() => ok);
    for (const method of ['POST', 'PATCH', 'PUT', 'DELETE', 'GET']) await fetchWithRetry(server.url, { method });
    expect(server.seen.map((r) => [r.method, r.key !== undefined])).toEqual([
      ['POST', true],
      ['PATCH', true],
      ['PUT', false],
      ['DELETE', false],
      ['GET', false],
    ]);
  });

  it('re-sends a Request with a body on every attempt', async () => {
    const { server } = await setup((n) => (n < 3 ? unavailable : ok));
    const request = new Request(server.url, { method: 'POST', body: 'payload' });
    const res = await fetchWithRetry(request, undefined, { sleep: async () => {} });
    expect(res.attempts).toBe(3);
    expect(server.seen.map((r) => r.body)).toEqual(['payload', 'payload', 'payload']);
  });

  it('refuses a stream body, an invalid key and invalid options before sending anything', async () => {
    const { server, post } = await setup(() => ok);
    const stream = new ReadableStream({ start: (c) => (c.enqueue(new TextEncoder().encode('x')), c.close()) });
    await expect(post({}, { body: stream })).rejects.toThrow(IdempotencyOptionsInvalidError);
    await expect(post({ idempotencyKey: '' })).rejects.toThrow(IdempotencyKeyInvalidError);
    await expect(post({}, { headers: { 'idempotency-key': '"open' } })).rejects.toThrow(IdempotencyKeyInvalidError);
    await expect(post({ retries: -1 })).rejects.toThrow(IdempotencyOptionsInvalidError);
    await expect(post({ baseDelay: 'soon' as never })).rejects.toThrow(IdempotencyOptionsInvalidError);
    expect(server.seen).toHaveLength(0);
  });
});
