// The main behaviours of the Express layer on every driver with a pool of
// connections (test/support/drivers.ts): node-postgres, postgres.js, Neon's
// Pool, and PgBouncer when CI starts it. Real HTTP; every test ends with an
// audit of what the database holds.
import { sql } from 'drizzle-orm';
import express, { type ErrorRequestHandler } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { idempotent } from '../../src/express.js';
import { testDatabase, type TestDatabase } from '../support/db.js';
import { chargeOn, closeDrivers, countOn, DRIVERS, type DriverUnderTest, type OpenDriver } from '../support/drivers.js';
import { listen, type Listening } from '../support/http.js';

const POOLED = DRIVERS.filter((d) => !d.oneConnection);
const databases = new Map<DriverUnderTest, TestDatabase>();
for (const driver of POOLED) if (!driver.unavailable) databases.set(driver, await testDatabase());
afterAll(closeDrivers);

const post = (url: string, body: unknown, key?: string): Promise<Response> =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }) },
    body: JSON.stringify(body),
  });

describe.each(POOLED)('idempotent() on $name', (driver: DriverUnderTest) => {
  if (driver.unavailable) {
    it.skip(`serves the routes: skipped, ${driver.unavailable}`, () => {});
    return;
  }
  let open: OpenDriver;
  let db: IdempotencyDatabase;
  let server: Listening;
  let url: string;
  let calls = 0;
  const charges = (ref: string) => countOn(db, 'charges', sql`ref = ${ref}`);
  const keys = (key: string) => countOn(db, 'idempotency_keys', sql`key = ${key}`);

  beforeAll(async () => {
    const t = databases.get(driver)!;
    open = await driver.open(t.url, t.name);
    db = open.db;
    await db.execute(sql`create table if not exists charges (id serial primary key, ref text not null, amount integer not null)`);
    const app = express();
    app.use(express.json());
    app.post(
      '/charges',
      idempotent(
        db,
        async (req, tx) => {
          calls++;
          const { ref, amount, fail } = req.body as { ref: string; amount: number; fail?: boolean };
          const charge = await chargeOn(tx, ref, amount);
          if (fail) throw new Error('card declined');
          return { status: 201, body: charge, headers: { location: `/charges/${charge.id}` } };
        },
        { scope: 'tenant', ...driver.options },
      ),
    );
    const onError: ErrorRequestHandler = (error: Error, _req, res, _next) => void res.status(500).json({ error: error.message });
    app.use(onError);
    server = await listen(app);
    url = `${server.url}/charges`;
  });
  afterAll(async () => {
    await server?.close();
    await open?.close();
  });

  it('runs the handler once, and replays status, body and headers with Idempotent-Replayed: true', async () => {
    const before = calls;
    const first = await post(url, { ref: 'h1', amount: 5 }, 'h1');
    const second = await post(url, { ref: 'h1', amount: 5 }, 'h1');
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(second.status).toBe(201);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(second.headers.get('location')).toBe(first.headers.get('location'));
    expect(await second.json()).toEqual(await first.json());
    expect(calls - before).toBe(1);
    expect(await charges('h1')).toBe(1);
  });

  it('answers 422 to the key sent with another body, and 400 to a missing key, changing nothing', async () => {
    await post(url, { ref: 'h2', amount: 5 }, 'h2');
    const reused = await post(url, { ref: 'h2', amount: 6 }, 'h2');
    const missing = await post(url, { ref: 'h2-missing', amount: 5 });
    expect(reused.status).toBe(422);
    expect(missing.status).toBe(400);
    expect(await charges('h2')).toBe(1);
    expect(await charges('h2-missing')).toBe(0);
  });

  it('stores nothing when the handler throws, and runs it again on the retry', async () => {
    const failed = await post(url, { ref: 'h3', amount: 5, fail: true }, 'h3');
    expect(failed.status).toBe(500);
    expect(await charges('h3')).toBe(0);
    expect(await keys('h3')).toBe(0);
    const retried = await post(url, { ref: 'h3', amount: 5 }, 'h3');
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    expect(await charges('h3')).toBe(1);
  });

  it('gives 8 concurrent duplicates one charge: one first answer, the rest replay it', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, () => post(url, { ref: 'h4', amount: 5 }, 'h4')));
    const bodies = await Promise.all(answers.map((a) => a.json()));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(201));
    expect(answers.filter((a) => a.headers.get('idempotent-replayed') === null)).toHaveLength(1);
    expect(new Set(bodies.map((b) => JSON.stringify(b))).size).toBe(1);
    expect(await charges('h4')).toBe(1);
    expect(await countOn(db, 'idempotency_keys', sql`key = 'h4' and status = 'completed'`)).toBe(1);
  });
});
