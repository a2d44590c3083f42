// The library's failures carry the driver's error without what drizzle's
// query wrapper prints (the statement and every parameter: the stored
// response, the fingerprint), however that wrapper's cause looks.
import { runInNewContext } from 'node:vm';
import { DrizzleQueryError } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { redact } from '../../src/driver/redacted-error.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();
const SECRET = '{"card":"4111 1111 1111 1111"}';

/** The error node-postgres throws for `sql`, as this realm sees it. */
const serverError = (sql: string) => t.pool.query(sql).then(() => expect.unreachable(), (e: unknown) => e as Error & { code: string });

describe('redact', () => {
  it("keeps the server's message and SQLSTATE, and drops the wrapper's statement and parameters", async () => {
    const cause = await serverError(`select 'x'::int / 0`);
    const redacted = redact(new DrizzleQueryError('update idempotency_keys set response = $1', [SECRET], cause));
    expect(redacted).toMatchObject({ name: 'DatabaseError', code: '22P02' });
    expect(redacted.message).not.toContain('4111');
    const unique = await serverError(`do $$ begin raise exception 'duplicate key value' using errcode = 'unique_violation'; end $$`);
    expect(redact(new DrizzleQueryError('insert …', [SECRET], unique))).toMatchObject({ code: '23505', message: 'duplicate key value' });
  });

  it.each([
    ['a thrown string', () => 'connection reset'],
    ['a plain object', () => ({ code: 'ECONNRESET' })],
    ['an error from another realm (vm, jest, vitest vmThreads)', () => runInNewContext(`Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })`) as unknown],
    ['nothing', () => undefined],
  ])("never passes on the wrapper's parameters when its cause is %s", (_what, cause) => {
    const redacted = redact(new DrizzleQueryError('update idempotency_keys set response = $1', [SECRET], cause() as Error));
    expect(redacted.message).not.toContain('4111');
    expect(redacted.message).not.toMatch(/params|idempotency_keys/);
  });

  it('keeps the message of an error that carries its query as a property (postgres.js, PGlite): theirs is the server\'s', () => {
    const driverError = Object.assign(new Error('could not serialize access due to concurrent update'), { code: '40001', query: 'update …', params: [SECRET] });
    expect(redact(driverError)).toMatchObject({ code: '40001', message: 'could not serialize access due to concurrent update' });
  });
});
