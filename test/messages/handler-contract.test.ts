import { describe, expect, it } from 'vitest';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { idempotentHandler } from '../../src/messages.js';
import { idempotentJobHandler } from '../../src/pg-boss.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';

const t = await testDatabase();

describe('a wrapped handler', () => {
  it('rejects, and never throws, when the message cannot be named: a batch mapped with Promise.all stays whole', async () => {
    const handle = idempotentHandler({ scope: 'q', messageId: (m: { id: string }) => m.id }, async () => 'done');
    let call: Promise<unknown> | undefined;
    expect(() => {
      call = handle(t.db, undefined as never);
    }).not.toThrow();
    await expect(call).rejects.toThrow(TypeError);
    const noTenant = () => {
      throw new Error('no tenant header');
    };
    const throwingScope = idempotentHandler({ scope: noTenant, messageId: (m: { id: string }) => m.id }, async () => 'done');
    expect(() => void throwingScope(t.db, { id: 'm-1' }).catch(() => {})).not.toThrow();
    await expect(throwingScope(t.db, { id: 'm-1' })).rejects.toThrow('no tenant header');
    expect(await keyRows(t.pool)).toEqual([]);
  });
});

describe('a scope found in the message', () => {
  it("refuses a message it finds no scope in, rather than consuming it in the scope '' where every tenant's ids meet", async () => {
    const perTenant = idempotentHandler({ scope: (m: { tenant?: string; id: string }) => m.tenant!, messageId: (m) => m.id }, async (_tx, m) => `${m.tenant}/${m.id}`);
    expect(await perTenant(t.db, { tenant: 'acme', id: 'order-7' })).toEqual({ value: 'acme/order-7', replayed: false });
    await expect(perTenant(t.db, { id: 'order-7' })).rejects.toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
    expect((await keyRows(t.pool)).filter((row) => row.key === 'order-7').map((row) => row.scope)).toEqual(['acme']);
  });
});

describe('a fingerprint of the message', () => {
  it('takes a body of any length as what the message says (hashed, never stored as given), as the SQS example passes m.Body', async () => {
    await createBusinessTables(t.pool);
    const fromSqs = idempotentHandler(
      { scope: 'sqs:orders', messageId: (m: { MessageId: string; Body: string }) => m.MessageId, fingerprint: (m) => m.Body },
      (tx: NodePgDatabase, m) => insertCharge(tx, m.MessageId, (JSON.parse(m.Body) as { lines: unknown[] }).lines.length),
    );
    // An order of 100 lines: some 4 KB of JSON (SQS takes up to 256 KiB); an empty body and a lone surrogate too.
    const body = JSON.stringify({ lines: Array.from({ length: 100 }, (_, i) => ({ sku: `sku-${i}`, quantity: 1, note: 'gift wrap' })) });
    const message = { MessageId: 'big-1', Body: body };
    const first = await fromSqs(t.db, message);
    expect(await fromSqs(t.db, message)).toEqual({ value: first.value, replayed: true });
    await expect(fromSqs(t.db, { MessageId: 'big-1', Body: body.replace('sku-7', 'sku-8') })).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    const odd = idempotentHandler({ scope: 'sqs:odd', messageId: (m: { id: string; body: string }) => m.id, fingerprint: (m) => m.body }, async () => 'ok');
    expect(await odd(t.db, { id: 'empty', body: '' })).toEqual({ value: 'ok', replayed: false });
    expect(await odd(t.db, { id: 'surrogate', body: 'half \ud800 a pair' })).toEqual({ value: 'ok', replayed: false });
    expect(await count(t.pool, 'charges', 'ref = $1', ['big-1'])).toBe(1);
    const stored = (await keyRows(t.pool)).filter((row) => row.scope.startsWith('sqs:'));
    expect(stored.map((row) => row.fingerprint)).toEqual([expect.stringMatching(/^sha256:/), expect.stringMatching(/^sha256:/), expect.stringMatching(/^sha256:/)]);
  });
});

describe('idempotentJobHandler', () => {
  it("keeps two queues' jobs of one id apart, even given { scope: undefined }: neither replays the other's answer", async () => {
    for (const [i, options] of [{}, { scope: undefined }].entries()) {
      const runs: string[] = [];
      const handlerOf = (queue: string) =>
        idempotentJobHandler(t.db, async (_tx: NodePgDatabase, job: { name: string }) => (runs.push(job.name), `${queue} ran`), options);
      const id = `shared-id-${i}`;
      expect(await handlerOf('welcome')([{ id, name: 'welcome', data: {} }])).toEqual(['welcome ran']);
      expect(await handlerOf('receipt')([{ id, name: 'receipt', data: {} }])).toEqual(['receipt ran']);
      expect(runs).toEqual(['welcome', 'receipt']);
    }
  });
});
