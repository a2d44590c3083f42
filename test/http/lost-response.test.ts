// Test 1 of the HTTP issue: the double-charge scenario. The payment commits,
// its answer is lost on the way back, the client retries. With the key, the
// retry gets the stored answer and the customer is charged once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchWithRetry, type RetryEvent } from '../../src/client.js';
import { startFaultProxy, type FaultMode, type FaultProxy } from '../../tools/fault-proxy.js';
import { testDatabase } from '../support/db.js';
import { waitForWaitingCalls } from '../support/activity.js';
import { count, createBusinessTables, deferred, keyRows } from '../support/fixtures.js';
import { listen, type Listening } from '../support/http.js';
import { paymentsApp, stockUp } from '../support/payments-app.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

const noWait = async () => {};
const paymentInit = (ref: string, sku: string): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-customer': 'alice' },
  body: JSON.stringify({ amount: 500, sku, ref }),
});
const quantityOf = async (sku: string) =>
  (await t.pool.query<{ quantity: number }>('select quantity from stock where sku = $1', [sku])).rows[0]!.quantity;

describe('a payment whose answer is lost', () => {
  let server: Listening;
  let proxy: FaultProxy;
  const gate = { hold: false, entered: deferred(), release: deferred() };
  beforeAll(async () => {
    server = await listen(
      paymentsApp(t.db, {}, {
        afterWrites: async () => {
          if (!gate.hold) return;
          gate.entered.resolve();
          await gate.release.promise;
        },
      }),
    );
    proxy = await startFaultProxy({ targetPort: server.port });
  });
  afterAll(async () => {
    await proxy.close();
    await server.close();
  });

  it.each<FaultMode>(['reset', 'close'])('is retried with the same key and replayed, and charged once (connection %s)', async (mode) => {
    const sku = `sku-${mode}`;
    await stockUp(t.db, sku, 10);
    proxy.dropNextResponses(1, mode);
    const retries: RetryEvent[] = [];

    const res = await fetchWithRetry(`${proxy.url}/payments`, paymentInit(`lost-${mode}`, sku), {
      sleep: noWait,
      onRetry: (event) => void retries.push(event),
    });

    expect(proxy.dropped).toBeGreaterThan(0);
    expect(retries.map((r) => r.reason)).toEqual(['network']);
    expect(res.status).toBe(201);
    expect(res.headers.get('idempotent-replayed')).toBe('true');
    expect(res.replayed).toBe(true);
    expect(res.attempts).toBe(2);
    const body = (await res.json()) as { id: number; amount: number; sku: string };
    expect(body).toMatchObject({ amount: 500, sku });
    expect(res.headers.get('location')).toBe(`/payments/${body.id}`);
    // The audit: one charge, one unit of stock, one completed key.
    expect(await count(t.pool, 'charges', 'ref = $1', [`lost-${mode}`])).toBe(1);
    expect(await quantityOf(sku)).toBe(9);
    const keys = (await keyRows(t.pool)).filter((k) => k.key === res.idempotencyKey);
    expect(keys).toMatchObject([{ scope: 'alice', status: 'completed' }]);
  });

  it('is replayed to a retry after the client gave up on a slow answer, and charged once', async () => {
    await stockUp(t.db, 'sku-late', 10);
    proxy.setDelay(1_000);
    const retries: RetryEvent[] = [];
    const res = await fetchWithRetry(`${proxy.url}/payments`, paymentInit('late', 'sku-late'), {
      timeout: 200,
      sleep: noWait,
      onRetry: (event) => {
        retries.push(event);
        proxy.setDelay(0);
      },
    });
    expect(retries.map((r) => r.reason)).toEqual(['timeout']);
    expect(res.status).toBe(201);
    expect(res.replayed).toBe(true);
    expect(await count(t.pool, 'charges', 'ref = $1', ['late'])).toBe(1);
    expect(await quantityOf('sku-late')).toBe(9);
  });

  it('is charged twice when retried without a key: the failure the key prevents', async () => {
    const open = await listen(paymentsApp(t.db, { required: false }));
    const openProxy = await startFaultProxy({ targetPort: open.port });
    try {
      await stockUp(t.db, 'sku-nokey', 10);
      openProxy.dropNextResponses(1);
      const init = paymentInit('nokey', 'sku-nokey');
      await expect(fetch(`${openProxy.url}/payments`, init)).rejects.toThrow();
      const retry = await fetch(`${openProxy.url}/payments`, init);
      expect(retry.status).toBe(201);
      expect(await count(t.pool, 'charges', 'ref = $1', ['nokey'])).toBe(2);
      expect(await quantityOf('sku-nokey')).toBe(8);
    } finally {
      await openProxy.close();
      await open.close();
    }
  });

  it('is replayed to a retry that timed out while the first attempt was still committing', async () => {
    await stockUp(t.db, 'sku-slow', 10);
    gate.hold = true;
    const retries: RetryEvent[] = [];
    const paying = fetchWithRetry(`${proxy.url}/payments`, paymentInit('slow', 'sku-slow'), {
      timeout: 500,
      sleep: noWait,
      onRetry: (event) => void retries.push(event),
    });
    await gate.entered.promise;
    // The retry parks in process behind the first attempt, still uncommitted ('wait' policy).
    await waitForWaitingCalls(1);
    gate.release.resolve();
    const res = await paying;
    gate.hold = false;

    expect(retries.map((r) => r.reason)).toEqual(['timeout']);
    expect(res.status).toBe(201);
    expect(res.replayed).toBe(true);
    expect(await count(t.pool, 'charges', 'ref = $1', ['slow'])).toBe(1);
    expect(await quantityOf('sku-slow')).toBe(9);
  });
});
