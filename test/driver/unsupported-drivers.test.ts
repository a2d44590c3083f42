// Drivers without interactive transactions cannot hold the key, fn's writes
// and the result in one transaction: the library refuses them at the first
// call, before it sends anything, and says what to use instead.
import { neon, neonConfig } from '@neondatabase/serverless';
import { drizzle as drizzleNeonHttp } from 'drizzle-orm/neon-http';
import { drizzle as drizzlePgProxy } from 'drizzle-orm/pg-proxy';
import { PgDialect } from 'drizzle-orm/pg-core';
import { afterAll, describe, expect, it } from 'vitest';
import { idempotent } from '../../src/express.js';
import { IdempotencyDriverUnsupportedError, lookupReplay, migrate, withIdempotency } from '../../src/index.js';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { testDatabase } from '../support/db.js';
import { drizzleMajor } from '../support/drizzle-version.js';
import { count } from '../support/fixtures.js';

// Modules of one drizzle-orm line only, loaded by a name the type checker does
// not follow (it checks this file against 0.45 and against 1.0).
const onlyOn = (major: 0 | 1, specifier: string): Promise<Record<string, unknown>> | undefined =>
  drizzleMajor === major ? (import(/* @vite-ignore */ specifier) as Promise<Record<string, unknown>>) : undefined;
type Constructor = new (...args: unknown[]) => object;

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

// drizzle-orm 1.0 has no prisma/pg.
const prismaModules = await Promise.all([onlyOn(0, 'drizzle-orm/prisma/pg/session'), onlyOn(0, 'drizzle-orm/pg-core')]);

describe.skipIf(drizzleMajor !== 0)("drizzle-orm/prisma/pg (the Prisma extension's $drizzle: no interactive transactions)", () => {
  // The extension's database needs @prisma/client; its session is the same without it.
  const sent: string[] = [];
  const prisma = {
    $queryRawUnsafe: async (text: string) => {
      sent.push(text);
      return [];
    },
  };
  const prismaDb = () => {
    const [session, pgCore] = prismaModules as [Record<string, unknown>, Record<string, unknown>];
    const PrismaPgSession = session.PrismaPgSession as Constructor;
    const PgDatabase = pgCore.PgDatabase as Constructor;
    const dialect = new PgDialect();
    return new PgDatabase(dialect, new PrismaPgSession(dialect, prisma, {}), undefined) as unknown as IdempotencyDatabase;
  };

  it('fails withIdempotency, migrate and idempotent() with IDEMPOTENCY_DRIVER_UNSUPPORTED, sending nothing', async () => {
    const db = prismaDb();
    const error = await withIdempotency(db, 'prisma-1', async () => 'must not run').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyDriverUnsupportedError);
    expect((error as Error).message).toContain('drizzle-orm/prisma/pg');
    await expect(migrate(db)).rejects.toBeInstanceOf(IdempotencyDriverUnsupportedError);
    expect(() => idempotent(db, async () => ({ status: 200, body: {} }), { scope: 'tenant' })).toThrow(IdempotencyDriverUnsupportedError);
    expect(sent).toEqual([]);
  });
});

// drizzle-orm 1.0's own HTTP driver (drizzle-orm/postgres/http, and its Neon
// form): one request per statement or batch; its transaction() throws.
// Its session is built here as the driver builds it, without @drizzle-team/minipg (whose client it takes).
const postgresHttp = await Promise.all([onlyOn(1, 'drizzle-orm/postgres/http/session'), onlyOn(1, 'drizzle-orm/pg-core')]);

describe.skipIf(drizzleMajor !== 1)('drizzle-orm/postgres/http of drizzle-orm 1.0 (no interactive transactions)', () => {
  // A stand-in for minipg's HTTP client that records what it is asked to send.
  const sent: string[] = [];
  const client = {
    query: async (text: string) => {
      sent.push(text);
      return { rows: [], fields: [] };
    },
  };
  const httpDb = () => {
    const [session, pgCore] = postgresHttp as [Record<string, unknown>, Record<string, unknown>];
    const PostgresHttpSession = session.PostgresHttpSession as Constructor;
    const PgAsyncDatabase = pgCore.PgAsyncDatabase as Constructor;
    const dialect = new PgDialect();
    return new PgAsyncDatabase(dialect, new PostgresHttpSession(client, async () => [], dialect, {}, {}), {}) as unknown as IdempotencyDatabase;
  };

  it('fails withIdempotency, migrate and idempotent() with IDEMPOTENCY_DRIVER_UNSUPPORTED, naming a driver to use instead, sending nothing', async () => {
    const db = httpDb();
    const error = await withIdempotency(db, 'postgres-http-1', async () => 'must not run').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyDriverUnsupportedError);
    expect(error).toMatchObject({ code: 'IDEMPOTENCY_DRIVER_UNSUPPORTED' });
    expect((error as Error).message).toContain('drizzle-orm/postgres/http');
    await expect(migrate(db)).rejects.toBeInstanceOf(IdempotencyDriverUnsupportedError);
    expect(() => idempotent(db, async () => ({ status: 200, body: {} }), { scope: 'tenant' })).toThrow(IdempotencyDriverUnsupportedError);
    expect(sent).toEqual([]);
  });
});
