// idempotentWorkflow checks what it is given while the app is built: a bad
// option fails at startup with IDEMPOTENCY_OPTIONS_INVALID, never on the first request.
import { describe, expect, it } from 'vitest';
import { defineWorkflow, IdempotencyOptionsInvalidError } from '../../src/index.js';
import { idempotentWorkflow as expressWorkflow } from '../../src/express.js';
import { idempotentWorkflow as fastifyWorkflow } from '../../src/fastify.js';
import { idempotentWorkflow as webWorkflow } from '../../src/web.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase({ max: 1 });
const pay = defineWorkflow('options.pay', async (_ctx, input: { amount: number }) => ({ status: 201, body: input }));
const input = (req: { body?: unknown }) => req.body as { amount: number };
const builders = [
  ['express', (options: object, db: unknown = t.db, workflow: unknown = pay) => expressWorkflow(db as never, workflow as never, options as never)],
  ['fastify', (options: object, db: unknown = t.db, workflow: unknown = pay) => fastifyWorkflow(db as never, workflow as never, options as never)],
  ['web', (options: object, db: unknown = t.db, workflow: unknown = pay) => webWorkflow(db as never, workflow as never, options as never)],
] as const;

describe.each(builders)('idempotentWorkflow on %s', (_name, build) => {
  it('builds with a scope and an input', () => {
    expect(typeof build({ scope: 'shop', input })).toBe('function');
  });

  it.each([
    ['no input', { scope: 'shop' }, /needs input/],
    ['no scope', { input }, /needs a scope/],
    ['an onError that is not a function', { scope: 'shop', input, onError: 'log' }, /onError must be a function/],
    ['methods: every request needs a key', { scope: 'shop', input, methods: ['POST'] }, /does not take methods/],
    ['required: every request needs a key', { scope: 'shop', input, required: false }, /does not take required/],
    ['isFinal: the answer is stored whatever its status', { scope: 'shop', input, isFinal: () => true }, /does not take isFinal/],
    ['a transaction config: each step has its own', { scope: 'shop', input, transaction: { isolationLevel: 'serializable' } }, /does not take transaction/],
    ['maxResultBytes: the workflow sets it, for the completer too', { scope: 'shop', input, maxResultBytes: 4096 }, /does not take maxResultBytes: set it on defineWorkflow/],
    ['an invalid TTL', { scope: 'shop', input, ttl: 'forever' }, /ttl/],
    ['a retryAfter of 0 seconds: Retry-After: 0 tells every client to retry at once', { scope: 'shop', input, retryAfter: 0 }, /retryAfter must be a whole number of seconds, at least 1/],
    ['a retryAfter of a fraction of a second', { scope: 'shop', input, retryAfter: 0.5 }, /retryAfter must be a whole number of seconds, at least 1/],
  ])('refuses %s with IDEMPOTENCY_OPTIONS_INVALID', (_what, options, message) => {
    expect(() => build(options)).toThrow(IdempotencyOptionsInvalidError);
    expect(() => build(options)).toThrow(message);
  });

  it('refuses a transaction instead of the database, and something that is not a workflow', async () => {
    await t.db.transaction(async (tx) => {
      expect(() => build({ scope: 'shop', input }, tx)).toThrow(/needs a database, not a transaction/);
    });
    expect(() => build({ scope: 'shop', input }, t.db, { name: 'shop.pay', run: async () => ({}) })).toThrow(/made by defineWorkflow/);
  });
});
