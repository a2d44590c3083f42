import { beforeAll, describe, expect, it } from 'vitest';
import { drizzle } from 'drizzle-orm/node-postgres';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { consumeOnce, downstreamKey, idempotentHandler } from '../../src/messages.js';
import { IdempotencyKeyInvalidError, IdempotencyKeyReusedError, IdempotencyOptionsInvalidError } from '../../src/shared/errors.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge, keyRows } from '../support/fixtures.js';
import { launch } from '../support/processes.js';

const t = await testDatabase();
beforeAll(() => createBusinessTables(t.pool));

/** The audit every test ends with: `ids` each left exactly one charge and one completed key. */
async function expectOneEffectEach(ids: string[], scope: string) {
  for (const id of ids) expect(await count(t.pool, 'charges', 'ref = $1', [id])).toBe(1);
  const keys = (await keyRows(t.pool)).filter((row) => row.scope === scope && ids.includes(row.key));
  expect(keys.map((row) => [row.key, row.status])).toEqual([...new Set(ids)].sort().map((id) => [id, 'completed']));
}

// The shapes the two usual brokers hand a consumer, as plain objects.
interface SqsMessage {
  MessageId: string;
  ReceiptHandle: string;
  Body: string;
}
interface KafkaRecord {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  value: string;
}

describe('consumeOnce', () => {
  it('runs the effects of a message once and replays the stored result to its redelivery', async () => {
    let runs = 0;
    const consume = () => consumeOnce(t.db, 'msg-1', async (tx) => ({ run: ++runs, charge: await insertCharge(tx, 'msg-1', 100) }), { scope: 'q' });
    const first = await consume();
    const again = await consume();
    expect(first.replayed).toBe(false);
    expect(again).toEqual({ value: first.value, replayed: true });
    expect(runs).toBe(1);
    await expectOneEffectEach(['msg-1'], 'q');
  });

  it('runs a redelivery again when the handler threw after its write, and keeps one effect', async () => {
    let runs = 0;
    const handler = async (tx: NodePgDatabase) => {
      await insertCharge(tx, 'msg-throws', 5);
      if (++runs === 1) throw new Error('crashed before the ack');
      return { runs };
    };
    await expect(consumeOnce(t.db, 'msg-throws', handler, { scope: 'q' })).rejects.toThrow('crashed before the ack');
    expect(await count(t.pool, 'charges', 'ref = $1', ['msg-throws'])).toBe(0);
    expect(await consumeOnce(t.db, 'msg-throws', handler, { scope: 'q' })).toEqual({ value: { runs: 2 }, replayed: false });
    expect(await consumeOnce(t.db, 'msg-throws', handler, { scope: 'q' })).toEqual({ value: { runs: 2 }, replayed: true });
    await expectOneEffectEach(['msg-throws'], 'q');
  });

  it('gives the handler a downstream key that is the same on every redelivery and differs per message and step', async () => {
    const keys: string[] = [];
    const handler = async (_tx: NodePgDatabase, context: { downstreamKey(step: string): string; messageId: string }) => {
      keys.push(context.downstreamKey('welcome-email'));
      throw new Error('the mail API timed out');
    };
    await expect(consumeOnce(t.db, 'msg-mail', handler, { scope: 'emails' })).rejects.toThrow();
    await expect(consumeOnce(t.db, 'msg-mail', handler, { scope: 'emails' })).rejects.toThrow();
    expect(keys[0]).toBe(keys[1]);
    expect(keys[0]).toBe(downstreamKey({ scope: 'emails', key: 'msg-mail', step: 'welcome-email' }));
    expect(keys[0]).toMatch(/^di-[0-9a-f]{64}$/);
    const others = [
      downstreamKey({ scope: 'emails', key: 'msg-mail', step: 'receipt' }),
      downstreamKey({ scope: 'emails', key: 'msg-other', step: 'welcome-email' }),
      downstreamKey({ scope: 'other', key: 'msg-mail', step: 'welcome-email' }),
      downstreamKey({ scope: 'emails:msg', key: 'mail', step: 'welcome-email' }),
    ];
    expect(new Set([keys[0], ...others]).size).toBe(5);
    expect(await keyRows(t.pool).then((rows) => rows.filter((r) => r.key === 'msg-mail'))).toEqual([]);
  });

  it('runs a message once when two workers consume it at the same time, and both get its result', async () => {
    const other = drizzle({ client: t.newPool(2) });
    const inside = deferred();
    const release = deferred();
    let runs = 0;
    const handler = async (tx: NodePgDatabase) => {
      runs++;
      const charge = await insertCharge(tx, 'msg-two-workers', 7);
      inside.resolve();
      await release.promise;
      return charge;
    };
    const first = consumeOnce(t.db, 'msg-two-workers', handler, { scope: 'q' });
    await inside.promise;
    // The second worker (its own pool, as another process) waits in the database on the first's key.
    const second = consumeOnce(other, 'msg-two-workers', handler, { scope: 'q' });
    release.resolve();
    const [a, b] = await Promise.all([first, second]);
    expect(runs).toBe(1);
    expect(b).toEqual({ value: a.value, replayed: true });
    await expectOneEffectEach(['msg-two-workers'], 'q');
  });
});

describe('a consumer killed with SIGKILL', () => {
  for (const point of ['effect', 'consumed'] as const) {
    it(`${point === 'effect' ? 'inside the handler, after its write' : 'after the commit, before the ack'}: the redelivery leaves one effect`, async () => {
      const id = `msg-killed-${point}`;
      const child = launch(process.execPath, ['--import', 'tsx', 'test/support/consume-child.ts', t.url, id, point], { env: process.env });
      await child.waitFor(new RegExp(point));
      child.child.kill('SIGKILL');
      await child.exited;
      let runs = 0;
      const redelivered = await consumeOnce(t.db, id, async (tx) => (runs++, insertCharge(tx, id, 42)), { scope: 'payments-queue' });
      // Killed before COMMIT: nothing of the first run remains, the redelivery runs. After: it replays.
      expect([runs, redelivered.replayed]).toEqual(point === 'effect' ? [1, false] : [0, true]);
      await expectOneEffectEach([id], 'payments-queue');
    });
  }
});

describe('idempotentHandler', () => {
  const sqs = (id: string, body: object): SqsMessage => ({ MessageId: id, ReceiptHandle: `rh-${Math.random()}`, Body: JSON.stringify(body) });
  const kafka = (offset: number, value: object): KafkaRecord => ({ topic: 'orders', partition: 3, offset: String(offset), key: null, value: JSON.stringify(value) });

  it('consumes an SQS message once by its MessageId, whatever its receipt handle', async () => {
    const handle = idempotentHandler(
      { scope: 'sqs:payments', messageId: (m: SqsMessage) => m.MessageId, fingerprint: (m) => m.Body },
      (tx: NodePgDatabase, m) => insertCharge(tx, m.MessageId, (JSON.parse(m.Body) as { amount: number }).amount),
    );
    const first = await handle(t.db, sqs('sqs-1', { amount: 30 }));
    const redelivered = await handle(t.db, sqs('sqs-1', { amount: 30 }));
    expect(redelivered).toEqual({ value: first.value, replayed: true });
    // The same id with another body is not the same message: refused, not replayed.
    await expect(handle(t.db, sqs('sqs-1', { amount: 31 }))).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    await expectOneEffectEach(['sqs-1'], 'sqs:payments');
  });

  it('consumes a Kafka record once by topic, partition and offset', async () => {
    const handle = idempotentHandler(
      { scope: (r: KafkaRecord) => `kafka:${r.topic}`, messageId: (r: KafkaRecord) => `${r.partition}/${r.offset}` },
      (tx: NodePgDatabase, r) => insertCharge(tx, `kafka-${r.partition}/${r.offset}`, 1),
    );
    // A consumer group rebalanced: offsets 10 and 11 arrive a second time.
    for (const offset of [10, 11, 10, 11, 12]) await handle(t.db, kafka(offset, { order: offset }));
    expect(await count(t.pool, 'charges', "ref like 'kafka-%'")).toBe(3);
    const keys = (await keyRows(t.pool)).filter((r) => r.scope === 'kafka:orders').map((r) => r.key);
    expect(keys).toEqual(['3/10', '3/11', '3/12']);
  });

  it('runs a message that a batch holds twice once, with a transaction per message', async () => {
    let runs = 0;
    const handle = idempotentHandler({ scope: 'batch-own', messageId: (m: SqsMessage) => m.MessageId }, async (tx: NodePgDatabase, m) => {
      runs++;
      return insertCharge(tx, m.MessageId, 2);
    });
    const batch = [sqs('b-1', {}), sqs('b-2', {}), sqs('b-1', {}), sqs('b-3', {}), sqs('b-2', {})];
    const results = await Promise.all(batch.map((m) => handle(t.db, m)));
    expect(runs).toBe(3);
    expect(results.filter((r) => r.replayed)).toHaveLength(2);
    expect(results[2]!.value).toEqual(results[0]!.value);
    await expectOneEffectEach(['b-1', 'b-2', 'b-3'], 'batch-own');
  });

  it('runs a message that a batch holds twice once, with the whole batch in one transaction', async () => {
    let runs = 0;
    const handle = idempotentHandler({ scope: 'batch-one-tx', messageId: (m: SqsMessage) => m.MessageId }, async (tx: NodePgDatabase, m) => {
      runs++;
      return insertCharge(tx, m.MessageId, 3);
    });
    const batch = [sqs('c-1', {}), sqs('c-2', {}), sqs('c-1', {}), sqs('c-1', {})];
    const results = await t.db.transaction((tx) => Promise.all(batch.map((m) => handle(tx, m))));
    expect(runs).toBe(2);
    expect(results.map((r) => r.replayed)).toEqual([false, false, true, true]);
    await expectOneEffectEach(['c-1', 'c-2'], 'batch-one-tx');
  });

  it('refuses a handler without a messageId function, and a message whose id is empty, changing nothing', async () => {
    const before = await count(t.pool, 'idempotency_keys');
    expect(() => idempotentHandler({} as never, async () => 1)).toThrow(IdempotencyOptionsInvalidError);
    expect(() => idempotentHandler({ messageId: 'id' } as never, async () => 1)).toThrow(expect.objectContaining({ code: 'IDEMPOTENCY_OPTIONS_INVALID' }));
    const handle = idempotentHandler({ messageId: (m: SqsMessage) => m.MessageId }, async () => 1);
    await expect(handle(t.db, sqs('', {}))).rejects.toBeInstanceOf(IdempotencyKeyInvalidError);
    expect(() => downstreamKey({ scope: 's', key: 'k', step: '' })).toThrow(IdempotencyOptionsInvalidError);
    expect(await count(t.pool, 'idempotency_keys')).toBe(before);
  });
});
