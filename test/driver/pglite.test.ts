// The same library on a second driver: PGlite, PostgreSQL compiled to WASM and
// run in process. One connection, so this covers behaviour, not concurrency.
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  evictKey,
  idempotencyStats,
  IdempotencyKeyReusedError,
  inspectKey,
  lookupReplay,
  migrate,
  sweepExpiredKeys,
  withIdempotency,
  withIdempotencyOutcome,
} from '../../src/index.js';

const client = new PGlite();
const db = drizzle({ client });

async function charges(ref: string): Promise<number> {
  const result = await client.query<{ n: number }>('select count(*)::int as n from charges where ref = $1', [ref]);
  return result.rows[0]!.n;
}

beforeAll(async () => {
  await migrate(db);
  await client.exec('create table charges (id serial primary key, ref text not null)');
});
afterAll(() => client.close());

const charge = (ref: string) => async (tx: Pick<typeof db, 'execute'>) => {
  const result = await tx.execute<{ id: number }>(sql`insert into charges (ref) values (${ref}) returning id`);
  return { id: result.rows[0]!.id };
};

describe('withIdempotency on drizzle-orm/pglite', () => {
  it('runs once and replays, given the database', async () => {
    const first = await withIdempotencyOutcome(db, 'p1', charge('p1'), { fingerprint: { a: 1 } });
    const second = await withIdempotencyOutcome(db, 'p1', charge('p1'), { fingerprint: { a: 1 } });
    expect(first.replayed).toBe(false);
    expect(second).toEqual({ value: first.value, replayed: true });
    expect(await lookupReplay(db, 'p1', { fingerprint: { a: 1 } })).toEqual(second);
    await expect(withIdempotency(db, 'p1', charge('p1'), { fingerprint: { a: 2 } })).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await charges('p1')).toBe(1);
  });

  it('rolls back claim and writes in a savepoint when fn throws inside a caller transaction', async () => {
    await db.transaction(async (tx) => {
      await withIdempotency(tx, 'p2', async (inner) => {
        await charge('p2')(inner);
        throw new Error('boom');
      }).catch(() => undefined);
      await withIdempotency(tx, 'p3', (inner) => charge('p3')(inner));
    });
    expect(await charges('p2')).toBe(0);
    expect(await charges('p3')).toBe(1);
    const keys = await client.query<{ key: string }>('select key from idempotency_keys order by key');
    expect(keys.rows.map((r) => r.key)).toEqual(['p1', 'p3']);
  });

  it('runs again after the ttl', async () => {
    await withIdempotency(db, 'p4', charge('p4'), { ttl: 1 });
    await client.exec(`update idempotency_keys set expires_at = now() - interval '1 second' where key = 'p4'`);
    expect((await withIdempotencyOutcome(db, 'p4', charge('p4'))).replayed).toBe(false);
    expect(await charges('p4')).toBe(2);
  });
});

describe('PGlite has one connection', () => {
  it('refuses a call on the database inside fn with a typed error instead of waiting for itself forever', async () => {
    const error = await withIdempotency(db, 'pg-outer', async () => withIdempotency(db, 'pg-inner', charge('pg-inner'), { waitTimeout: '1s' }), {
      waitTimeout: '1s',
    }).catch((e: unknown) => e);
    expect((error as { code?: string }).code).toBe('IDEMPOTENCY_REENTRANT_CALL');
    expect(await charges('pg-inner')).toBe(0);
  });
});

describe("the library's other calls on a PGlite database inside fn", () => {
  // PGlite runs one transaction at a time, and every query waits for the open
  // one: a lookup on the database inside fn would wait for its own caller.
  const own = new PGlite();
  const ownDb = drizzle({ client: own });
  beforeAll(() => migrate(ownDb));
  afterAll(() => own.close());

  /** What `call` settles to, or 'still waiting' after a second. */
  const settled = (call: Promise<unknown>) =>
    Promise.race([
      call.then(
        () => 'returned',
        (e: unknown) => (e as { code?: string }).code,
      ),
      new Promise((resolve) => setTimeout(() => resolve('still waiting'), 1000).unref()),
    ]);

  it.each([
    ['lookupReplay', () => lookupReplay(ownDb, 'pg-other')],
    ['inspectKey', () => inspectKey(ownDb, 'pg-other')],
    ['evictKey', () => evictKey(ownDb, 'pg-other')],
    ['idempotencyStats', () => idempotencyStats(ownDb)],
    ['sweepExpiredKeys', () => sweepExpiredKeys(ownDb)],
  ])('refuses %s with IDEMPOTENCY_REENTRANT_CALL instead of waiting for itself forever', async (_name, call) => {
    const inner = await withIdempotency(ownDb, `pg-outer-${_name}`, async () => settled(call()));
    expect(inner).toBe('IDEMPOTENCY_REENTRANT_CALL');
  });
});
