import { afterAll, describe, expect, it } from 'vitest';
import { telemetryHash } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables } from '../support/fixtures.js';
import { listen } from '../support/http.js';
import { paymentsApp, stockUp } from '../support/payments-app.js';
import { recordEvents } from '../support/telemetry.js';

const t = await testDatabase();
await createBusinessTables(t.pool);
await stockUp(t.db, 'mug', 5);
const server = await listen(paymentsApp(t.db));
afterAll(() => server.close());

const pay = (key: string, body: object) =>
  fetch(`${server.url}/payments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, 'x-customer': 'alice' },
    body: JSON.stringify(body),
  });

describe('the Express layer', () => {
  it('publishes the events of its calls: the first request executes, its retry replays, another body under the key is refused', async () => {
    const events = recordEvents();
    const body = { amount: 300, sku: 'mug', ref: 'http-pay-1' };
    expect((await pay('http-key-1', body)).status).toBe(201);
    expect((await pay('http-key-1', body)).headers.get('idempotent-replayed')).toBe('true');
    expect((await pay('http-key-1', { ...body, amount: 301 })).status).toBe(422);
    expect(events.byCall('alice', 'http-key-1')).toEqual([
      ['claimed', 'stored', 'call'],
      ['replayed', 'call'],
      ['key-reused', 'call'],
    ]);
    expect(events.of('alice', 'http-key-1').every((e) => e.message.scopeHash === telemetryHash('alice'))).toBe(true);
    expect(JSON.stringify(events.all)).not.toMatch(/alice|http-key-1/);
    expect(await count(t.pool, 'charges', `ref = 'http-pay-1'`)).toBe(1);
    expect(await count(t.pool, 'stock', `sku = 'mug' and quantity = 4`)).toBe(1);
  });
});
