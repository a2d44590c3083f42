import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../../examples/gateway/app.js';
import { GatewayDeclinedError, GatewayOutcomeUnknownError, gatewayClient, type Charge, type GatewayClient } from '../../examples/gateway/client.js';
import { spawnGateway } from '../../examples/gateway/process.js';
import { migrateGateway } from '../../examples/gateway/store.js';
import { testDatabase } from '../support/db.js';
import { count } from '../support/fixtures.js';

const t = await testDatabase({ max: 20 });
let gateway: Gateway;
let client: GatewayClient;

beforeAll(async () => {
  await migrateGateway(t.db);
  gateway = await startGateway(t.db);
  client = gatewayClient(gateway.url);
});
afterAll(() => gateway?.close());
beforeEach(() => client.setFaults({ dropAfterCharge: 0, slowRate: 0, slowMs: 2_000, error500Rate: 0 }));

const order = (reference: string = randomUUID()) => ({ amount: 1250, currency: 'EUR', reference });
/** The gateway's own rows for `key`, from its table. */
const rowsFor = (key: string) => count(t.pool, 'gateway.gateway_charges', 'idempotency_key = $1', [key]);
const failure = (promise: Promise<unknown>) => promise.then(() => expect.unreachable('it answered 2xx'), (error: unknown) => error);

describe('the fake payment gateway: one charge per idempotency key', () => {
  it('charges a key once when twenty duplicates arrive at once, and answers each with that charge', async () => {
    const key = randomUUID();
    const input = order();
    const charges = await Promise.all(Array.from({ length: 20 }, () => client.charge(input, { idempotencyKey: key })));
    expect(new Set(charges.map((c) => c.id)).size).toBe(1);
    expect(charges[0]).toMatchObject({ ...input, idempotencyKey: key, status: 'succeeded' });
    expect(await rowsFor(key)).toBe(1);
    expect(await client.findCharge(key)).toEqual(charges[0]);
  });

  it('answers a repeat with the same request with the same charge, marked as a replay', async () => {
    const key = randomUUID();
    const send = () =>
      fetch(`${gateway.url}/v1/charges`, { method: 'POST', headers: { 'idempotency-key': key, 'content-type': 'application/json' }, body: JSON.stringify(order('r-1')) });
    const first = await send();
    const again = await send();
    expect([first.status, again.status]).toEqual([201, 200]);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(((await again.json()) as Charge).id).toBe(((await first.json()) as Charge).id);
    expect(await rowsFor(key)).toBe(1);
  });

  it('refuses the key sent again with another request (422, like Stripe) and keeps the first charge', async () => {
    const key = randomUUID();
    const first = await client.charge(order('r-1'), { idempotencyKey: key });
    const error = await failure(client.charge({ ...order('r-1'), amount: 9_999 }, { idempotencyKey: key }));
    expect(error).toBeInstanceOf(GatewayDeclinedError);
    expect(error).toMatchObject({ code: 'GATEWAY_DECLINED', status: 422, reason: 'idempotency_key_reused', retryable: false });
    expect(await client.findCharge(key)).toEqual(first);
    expect(await rowsFor(key)).toBe(1);
  });

  it('refuses a charge without an Idempotency-Key, or with a bad body, and charges nothing', async () => {
    const before = await count(t.pool, 'gateway.gateway_charges');
    const noKey = await fetch(`${gateway.url}/v1/charges`, { method: 'POST', body: JSON.stringify(order()) });
    expect(noKey.status).toBe(400);
    expect(await noKey.json()).toMatchObject({ error: { code: 'idempotency_key_required' } });
    for (const bad of [{ ...order(), amount: 0 }, { ...order(), amount: 1.5 }, { ...order(), currency: 'EURO' }, { ...order(), reference: '' }]) {
      const error = await failure(client.charge(bad, { idempotencyKey: randomUUID() }));
      expect(error).toMatchObject({ code: 'GATEWAY_DECLINED', status: 400 });
    }
    expect(await count(t.pool, 'gateway.gateway_charges')).toBe(before);
  });

  it('declines an amount over the card limit (402), records the refusal once and replays it', async () => {
    const key = randomUUID();
    const input = { ...order(), amount: 5_000_000 };
    for (let i = 0; i < 2; i++) {
      const error = await failure(client.charge(input, { idempotencyKey: key }));
      expect(error).toBeInstanceOf(GatewayDeclinedError);
      expect(error).toMatchObject({ status: 402, reason: 'card_declined', charge: { idempotencyKey: key, status: 'declined' } });
    }
    expect(await client.findCharge(key)).toMatchObject({ status: 'declined', declineCode: 'card_declined' });
    expect(await rowsFor(key)).toBe(1);
  });

  it('answers 404 for a key it never charged: findCharge says undefined', async () => {
    expect(await client.findCharge(randomUUID())).toBeUndefined();
  });
});

describe('the fake payment gateway: faults on purpose', () => {
  it('drop-after-charge: charges, then drops the connection; the caller cannot tell, the ledger can', async () => {
    const key = randomUUID();
    const input = order();
    const error = await failure(client.charge(input, { idempotencyKey: key, fault: 'drop-after-charge' }));
    expect(error).toBeInstanceOf(GatewayOutcomeUnknownError);
    expect(error).toMatchObject({ code: 'GATEWAY_OUTCOME_UNKNOWN', reason: 'network', retryable: true });
    const found = await client.findCharge(key);
    expect(found).toMatchObject({ idempotencyKey: key, status: 'succeeded' });
    // The retry with the same key gets that charge, not a second one.
    expect((await client.charge(input, { idempotencyKey: key })).id).toBe(found!.id);
    expect(await rowsFor(key)).toBe(1);
  });

  it('slow: charges first, then answers past the caller\'s timeout', async () => {
    await client.setFaults({ slowMs: 10_000 });
    const key = randomUUID();
    const error = await failure(client.charge(order(), { idempotencyKey: key, fault: 'slow', timeoutMs: 200 }));
    expect(error).toMatchObject({ code: 'GATEWAY_OUTCOME_UNKNOWN', reason: 'timeout' });
    expect(await client.findCharge(key)).toMatchObject({ status: 'succeeded' });
    expect(await rowsFor(key)).toBe(1);
  });

  it('slow, and the caller aborts (its lease was lost): an unknown outcome of its own kind', async () => {
    await client.setFaults({ slowMs: 10_000 });
    const key = randomUUID();
    const abort = new AbortController();
    const pending = failure(client.charge(order(), { idempotencyKey: key, fault: 'slow', signal: abort.signal }));
    while ((await rowsFor(key)) === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    abort.abort();
    expect(await pending).toMatchObject({ code: 'GATEWAY_OUTCOME_UNKNOWN', reason: 'aborted' });
    expect(await rowsFor(key)).toBe(1);
  });

  it('error-500: answers 500 without charging; the retry charges once', async () => {
    const key = randomUUID();
    const error = await failure(client.charge(order(), { idempotencyKey: key, fault: 'error-500' }));
    expect(error).toMatchObject({ code: 'GATEWAY_OUTCOME_UNKNOWN', reason: 'server-error', status: 500 });
    expect(await client.findCharge(key)).toBeUndefined();
    expect(await rowsFor(key)).toBe(0);
    await client.charge(order(), { idempotencyKey: key });
    expect(await rowsFor(key)).toBe(1);
  });

  it('applies the rates POST /v1/faults sets to every charge, until they are set back', async () => {
    await client.setFaults({ error500Rate: 1 });
    const keys = Array.from({ length: 5 }, () => randomUUID());
    const input = order();
    for (const key of keys) expect(await failure(client.charge(input, { idempotencyKey: key }))).toMatchObject({ status: 500 });
    for (const key of keys) expect(await rowsFor(key)).toBe(0);
    await client.setFaults({ error500Rate: 0, dropAfterCharge: 1 });
    for (const key of keys) expect(await failure(client.charge(input, { idempotencyKey: key }))).toMatchObject({ reason: 'network' });
    await client.setFaults({ dropAfterCharge: 0 });
    for (const key of keys) expect(await client.charge(input, { idempotencyKey: key })).toMatchObject({ status: 'succeeded' });
    for (const key of keys) expect(await rowsFor(key)).toBe(1);
  });

  it('refuses bad fault settings and an unknown Gateway-Fault, changing nothing', async () => {
    const before = await client.setFaults({});
    for (const bad of [{ dropAfterCharge: 2 }, { slowRate: -0.1 }, { slowMs: 'long' }, { flakiness: 0.5 }]) {
      expect(await failure(client.setFaults(bad as never))).toMatchObject({ status: 400, reason: 'faults_invalid' });
    }
    expect(await client.setFaults({})).toEqual(before);
    const key = randomUUID();
    expect(await failure(client.charge(order(), { idempotencyKey: key, fault: 'explode' as never }))).toMatchObject({ status: 400, reason: 'fault_invalid' });
    expect(await rowsFor(key)).toBe(0);
  });
});

describe('the fake payment gateway under a storm with every fault on', () => {
  it('leaves exactly one charge per key in its ledger when clients retry with one key per payment', async () => {
    await client.setFaults({ dropAfterCharge: 0.2, slowRate: 0.15, slowMs: 600, error500Rate: 0.2 });
    const before = await gateway.stats();
    const payments = Array.from({ length: 60 }, (_, i) => ({ key: randomUUID(), input: { amount: 100 + i, currency: 'USD', reference: `storm-${i}` } }));
    /** A careful caller: the same key until it has an answer; after an unknown outcome, it asks first every other time. */
    const pay = async ({ key, input }: (typeof payments)[number]): Promise<Charge> => {
      for (let attempt = 1; ; attempt++) {
        if (attempt > 1 && attempt % 2 === 0) {
          const found = await client.findCharge(key).catch(() => undefined);
          if (found) return found;
        }
        try {
          return await client.charge(input, { idempotencyKey: key, timeoutMs: 300 });
        } catch (error) {
          if (!(error instanceof GatewayOutcomeUnknownError) || attempt === 50) throw error;
        }
      }
    };
    // Each payment sent three times at once (a double click and a retrying worker).
    const answers = await Promise.all(payments.flatMap((p) => [pay(p), pay(p), pay(p)]));
    await client.setFaults({ dropAfterCharge: 0, slowRate: 0, error500Rate: 0 });

    const after = await gateway.stats();
    expect(after.dropped).toBeGreaterThan(before.dropped);
    expect(after.slowed).toBeGreaterThan(before.slowed);
    expect(after.failed500).toBeGreaterThan(before.failed500);
    // The audit, from the gateway's own table: one succeeded charge per key, with that key's request.
    const { rows } = await t.pool.query<{ idempotency_key: string; n: number; reference: string; amount: number }>(
      `select idempotency_key, count(*)::int as n, min(reference) as reference, min(amount) as amount
       from gateway.gateway_charges where idempotency_key = any($1) and status = 'succeeded' group by idempotency_key`,
      [payments.map((p) => p.key)],
    );
    expect(rows).toHaveLength(payments.length);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    const byKey = new Map(rows.map((r) => [r.idempotency_key, r]));
    for (const p of payments) expect(byKey.get(p.key)).toMatchObject({ reference: p.input.reference, amount: p.input.amount });
    // Every caller holds the one charge of its key, and GET /v1/ledger lists it once.
    const ledger = await client.ledger();
    for (const [i, answer] of answers.entries()) {
      const p = payments[Math.floor(i / 3)]!;
      expect(ledger.filter((c) => c.idempotencyKey === p.key)).toEqual([answer]);
    }
  });
});

describe('the gateway as its own process (examples/gateway/server.ts)', () => {
  it('migrates its schema, says it listens, charges once per key, and stops on SIGTERM', async () => {
    const own = await spawnGateway(t.url);
    try {
      const remote = gatewayClient(own.url);
      const key = randomUUID();
      const [a, b] = await Promise.all([remote.charge(order('proc'), { idempotencyKey: key }), remote.charge(order('proc'), { idempotencyKey: key })]);
      expect(a.id).toBe(b.id);
      expect(await rowsFor(key)).toBe(1);
    } finally {
      await own.stop();
    }
  });
});
