import { describe, expect, it } from 'vitest';
import { idempotentHandler } from '../../src/messages.js';
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
