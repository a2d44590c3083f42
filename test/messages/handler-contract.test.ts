import { describe, expect, it } from 'vitest';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { idempotentHandler } from '../../src/messages.js';
import { idempotentJobHandler } from '../../src/pg-boss.js';
import { testDatabase } from '../support/db.js';
import { keyRows } from '../support/fixtures.js';

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
