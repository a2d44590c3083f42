import { describe, expect, it } from 'vitest';
import {
  completeAbandonedKeys,
  defineWorkflow,
  IdempotencyKeyInvalidError,
  IdempotencyOptionsInvalidError,
  runWorkflow,
  startCompleter,
  type AnyWorkflow,
  type Workflow,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();

let ran = 0;
const noop = defineWorkflow('test.noop', async () => {
  ran++;
  return 'ran';
});

async function rowCount(): Promise<number> {
  const { rows } = await t.pool.query<{ n: number }>(`select count(*)::int as n from idempotency_keys`);
  return rows[0]!.n;
}

describe('bad input to leased work gets a typed error and writes nothing', () => {
  it.each([
    ['an empty name', ''],
    ['a name over 255 characters', 'w'.repeat(256)],
    ['a name with a lone surrogate', 'pay\ud800'],
    ['a name with NUL', 'pay\u0000'],
    ['a name that is not a string', 42],
  ])('defineWorkflow refuses %s', (_what, name) => {
    expect(() => defineWorkflow(name as string, async () => 1)).toThrow(IdempotencyOptionsInvalidError);
  });

  it.each([
    ['a zero lease', { lease: 0 }],
    ['a lease that is not a duration', { lease: 'soon' }],
    ['a heartbeat as long as the lease', { lease: '1s', heartbeat: '1s' }],
    ['a heartbeat under 50 ms', { lease: '1s', heartbeat: 10 }],
    ['zero attempts', { maxAttempts: 0 }],
    ['fractional attempts', { maxAttempts: 1.5 }],
    ['a result limit under 16 bytes', { maxResultBytes: 8 }],
    ['a fractional result limit', { maxResultBytes: 1024.5 }],
  ])('defineWorkflow refuses %s', (_what, options) => {
    expect(() => defineWorkflow('test.bad', async () => 1, options as never)).toThrow(IdempotencyOptionsInvalidError);
  });

  // Node runs a timer set past 2^31 - 1 ms (24.8 days) after 1 ms: a heartbeat in a busy loop, a call that times out at once.
  it.each([
    ['a heartbeat over 24.8 days', () => defineWorkflow('test.bad', async () => 1, { lease: '90d', heartbeat: '30d' })],
    ['a completer interval over 24.8 days', () => startCompleter(t.db, [noop], { interval: '30d' })],
  ])('refuses %s (longer than a timer can wait)', (_what, make) => {
    expect(make).toThrow(IdempotencyOptionsInvalidError);
  });

  it('keeps the default heartbeat of a long lease within what a timer can wait', () => {
    expect(defineWorkflow('test.long', async () => 1, { lease: '90d' }).heartbeatMs).toBeLessThanOrEqual(2 ** 31 - 1);
  });

  it('runWorkflow refuses a transaction as db: leased work needs its own commits', async () => {
    await t.db.transaction(async (tx) => {
      await expect(runWorkflow(tx, 'in-tx', noop, null)).rejects.toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
    });
    expect(await rowCount()).toBe(0);
  });

  it.each([
    ['a Map', new Map([['a', 1]])],
    ['a BigInt', { amount: 10n }],
    ['a cycle', (() => { const o: Record<string, unknown> = {}; o.self = o; return o; })()],
    ['a string with NUL', { note: 'a\u0000b' }],
  ])('runWorkflow refuses input that is %s (not JSON as it is)', async (_what, input) => {
    await expect(runWorkflow(t.db, 'bad-input', noop, input)).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(await rowCount()).toBe(0);
  });

  it.each([
    ['an empty key', '', IdempotencyKeyInvalidError],
    ['a key over 255 characters', 'k'.repeat(256), IdempotencyKeyInvalidError],
  ])('runWorkflow refuses %s', async (_what, key, type) => {
    await expect(runWorkflow(t.db, key, noop, null)).rejects.toBeInstanceOf(type);
    expect(await rowCount()).toBe(0);
  });

  it.each([
    ['not made by defineWorkflow', { name: 'x', run: async () => 1 }, {}],
    ['an unknown option', noop, { lookupFirst: true }],
    ['a bad onInFlight', noop, { onInFlight: 'later' }],
    ['a bad ttl', noop, { ttl: '-1s' }],
    ['a bad schema', noop, { schema: 'x"; drop table y; --' }],
    // The workflow's own limit, so that the completer resumes with the same one.
    ['maxResultBytes (an option of defineWorkflow)', noop, { maxResultBytes: 2048 }],
  ])('runWorkflow refuses a workflow or options %s', async (_what, workflow, options) => {
    await expect(runWorkflow(t.db, 'bad-options', workflow as Workflow<null, unknown>, null, options as never)).rejects.toBeInstanceOf(
      IdempotencyOptionsInvalidError,
    );
    expect(await rowCount()).toBe(0);
    expect(ran).toBe(0);
  });

  it('refuses a step name used twice in one run, before the second runs', async () => {
    let second = 0;
    const twice = defineWorkflow('test.twice', async (ctx) => {
      await ctx.step('same', async () => 1);
      await ctx.step('same', async () => {
        second++;
        return 2;
      });
    });
    await expect(runWorkflow(t.db, 'twice', twice, null)).rejects.toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
    expect(second).toBe(0);
    const { rows } = await t.pool.query(`select steps, locked_until <= now() as released from idempotency_keys where key = 'twice'`);
    expect(rows).toEqual([{ steps: { same: { value: 1 } }, released: true }]);
  });

  it.each([
    ['an empty list', []],
    ['something that is not a workflow', [{ name: 'x' }]],
    ['two workflows of one name', [defineWorkflow('test.dup', async () => 1), defineWorkflow('test.dup', async () => 2)]],
  ])('the completer refuses %s', async (_what, workflows) => {
    await expect(completeAbandonedKeys(t.db, workflows as AnyWorkflow[])).rejects.toBeInstanceOf(IdempotencyOptionsInvalidError);
    expect(() => startCompleter(t.db, workflows as AnyWorkflow[])).toThrow(IdempotencyOptionsInvalidError);
  });

  it.each([
    ['a limit of 0', { limit: 0 }],
    ['a bad interval', { interval: 'often' }],
    ['an onError that is not a function', { onError: 'log' }],
  ])('the completer refuses %s', async (_what, options) => {
    expect(() => startCompleter(t.db, [noop], options as never)).toThrow(IdempotencyOptionsInvalidError);
  });
});
