// Drivers without interactive transactions cannot hold the key, fn's writes
// and the result in one transaction: the library refuses them at the first
// call, before it sends anything, and says what to use instead.
import { neon, neonConfig } from '@neondatabase/serverless';
import { drizzle as drizzleNeonHttp } from 'drizzle-orm/neon-http';
import { drizzle as drizzlePgProxy } from 'drizzle-orm/pg-proxy';
import { PgDatabase, PgDialect } from 'drizzle-orm/pg-core';
import { PrismaPgSession } from 'drizzle-orm/prisma/pg/session';
import { afterAll, describe, expect, it } from 'vitest';
import { idempotent } from '../../src/express.js';
import { IdempotencyDriverUnsupportedError, lookupReplay, migrate, withIdempotency } from '../../src/index.js';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { testDatabase } from '../support/db.js';
import { count } from '../support/fixtures.js';

const t = await testDatabase();

// neon-http sends each statement as an HTTPS request: counting them shows that nothing left the process.
const requests: string[] = [];
const originalFetch: unknown = neonConfig.fetchFunction;
neonConfig.fetchFunction = (url: string) => {
  requests.push(url);
  return Promise.reject(new Error('no network in this test'));
};
afterAll(() => {
  neonConfig.fetchFunction = originalFetch;
});
const neonHttp = drizzleNeonHttp({ client: neon('postgres://postgres@127.0.0.1:5432/test') });

// pg-proxy forwards each statement to a callback: here, straight to the test database.
const forwarded: string[] = [];
const pgProxy = drizzlePgProxy(async (text, params, method) => {
  forwarded.push(text);
  const result = method === 'all' ? await t.pool.query({ text, values: params, rowMode: 'array' }) : await t.pool.query(text, params);
  return { rows: result.rows };
});

describe('drizzle-orm/neon-http (no interactive transactions)', () => {
  it('fails withIdempotency with IDEMPOTENCY_DRIVER_UNSUPPORTED, naming neon-serverless, before any request', async () => {
    const error = await withIdempotency(neonHttp, 'neon-http-1', async () => 'must not run').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyDriverUnsupportedError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_DRIVER_UNSUPPORTED', status: 500, retryable: false });
    expect((error as Error).message).toContain('drizzle-orm/neon-http');
    expect((error as Error).message).toContain('drizzle-orm/neon-serverless');
    expect(requests).toEqual([]);
  });

  it('fails migrate and idempotent() the same way, before any request', async () => {
    await expect(migrate(neonHttp)).rejects.toBeInstanceOf(IdempotencyDriverUnsupportedError);
    expect(() => idempotent(neonHttp, async () => ({ status: 200, body: {} }), { scope: 'tenant' })).toThrow(IdempotencyDriverUnsupportedError);
    expect(requests).toEqual([]);
  });
});

describe('drizzle-orm/pg-proxy (no interactive transactions)', () => {
  it('fails withIdempotency with IDEMPOTENCY_DRIVER_UNSUPPORTED and sends nothing', async () => {
    const error = await withIdempotency(pgProxy, 'proxy-1', async () => 'must not run').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyDriverUnsupportedError);
    expect((error as Error).message).toContain('drizzle-orm/pg-proxy');
    expect(forwarded).toEqual([]);
    expect(await count(t.pool, 'idempotency_keys')).toBe(0);
  });

  it('still answers lookupReplay, one SELECT that needs no transaction', async () => {
    expect(await lookupReplay(pgProxy, 'proxy-1')).toBeUndefined();
    expect(forwarded).toHaveLength(1);
  });
});

describe("drizzle-orm/prisma/pg (the Prisma extension's $drizzle: no interactive transactions)", () => {
  // The extension's database needs @prisma/client; its session is the same without it.
  const sent: string[] = [];
  const dialect = new PgDialect();
  const prisma = {
    $queryRawUnsafe: async (text: string) => {
      sent.push(text);
      return [];
    },
  };
  const prismaDb = new PgDatabase(dialect, new PrismaPgSession(dialect, prisma as never, {}), undefined) as unknown as IdempotencyDatabase;

  it('fails withIdempotency, migrate and idempotent() with IDEMPOTENCY_DRIVER_UNSUPPORTED, sending nothing', async () => {
    const error = await withIdempotency(prismaDb, 'prisma-1', async () => 'must not run').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyDriverUnsupportedError);
    expect((error as Error).message).toContain('drizzle-orm/prisma/pg');
    await expect(migrate(prismaDb)).rejects.toBeInstanceOf(IdempotencyDriverUnsupportedError);
    expect(() => idempotent(prismaDb, async () => ({ status: 200, body: {} }), { scope: 'tenant' })).toThrow(IdempotencyDriverUnsupportedError);
    expect(sent).toEqual([]);
  });
});
