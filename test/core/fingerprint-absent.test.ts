// Issue 18, item 3: the README's options table said a missing fingerprint was
// "not compared", while a call with one on a key stored without one (and the
// other way round) got IDEMPOTENCY_KEY_REUSED. The rule is the second, and the
// README now says it: a fingerprint is compared exactly, absence included, so
// one request's answer never reaches a call that cannot be shown to be the same.
import { describe, expect, it } from 'vitest';
import { IdempotencyKeyReusedError, lookupReplay, withIdempotency, withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();

describe('a fingerprint is compared exactly, absence included', () => {
  it('a key stored without one refuses a call with one, from withIdempotency and from lookupReplay', async () => {
    await withIdempotency(t.db, 'stored-without', async () => 'first', { scope: 'alice' });
    await expect(withIdempotency(t.db, 'stored-without', async () => 'second', { scope: 'alice', fingerprint: { a: 1 } })).rejects.toBeInstanceOf(
      IdempotencyKeyReusedError,
    );
    await expect(lookupReplay(t.db, 'stored-without', { scope: 'alice', fingerprint: { a: 1 } })).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await lookupReplay(t.db, 'stored-without', { scope: 'alice' })).toEqual({ value: 'first', replayed: true });
  });

  it('a key stored with one refuses a call without one', async () => {
    await withIdempotency(t.db, 'stored-with', async () => 'first', { scope: 'alice', fingerprint: 'order 7' });
    await expect(withIdempotency(t.db, 'stored-with', async () => 'second', { scope: 'alice' })).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    await expect(lookupReplay(t.db, 'stored-with', { scope: 'alice' })).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await withIdempotencyOutcome(t.db, 'stored-with', async () => 'second', { scope: 'alice', fingerprint: 'order 7' })).toEqual({
      value: 'first',
      replayed: true,
    });
  });
});
