// The shop's POST /payments three ways, in one app so they share the process,
// the pool and the JSON parser: only the idempotency layer differs. Each route
// validates first, as the shop does, so a bad body never touches a key.
import express, { type Express, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { idempotent } from 'drizzle-idempotency/express';
import { ShopRefusal, type ShopDb } from '../examples/shop/db.js';
import { createPayment, type Payment, type PaymentInput } from '../examples/shop/payments.js';
import { parsePayment } from '../examples/shop/validation.js';
import { redisIdempotency } from './redis-middleware.js';

/** Route of each variant; the payment's `channel` column names the variant too. */
export const PAYMENT_ROUTES = {
  bare: '/bare/payments',
  ours: '/ours/payments',
  plain: '/plain/payments',
  redis: '/redis/payments',
  handwritten: '/handwritten/payments',
} as const;
export type Variant = keyof typeof PAYMENT_ROUTES;

const userOf = (req: Request): string => {
  const user = req.get('x-user-id');
  if (!user) throw new ShopRefusal(401, 'UNAUTHENTICATED', 'send your user id in X-User-Id');
  return user;
};

const validPayment: RequestHandler = (req, _res, next) => {
  userOf(req);
  req.body = parsePayment(req.body);
  next();
};

const pay = (db: ShopDb, req: Request, channel: Variant): Promise<Payment> =>
  createPayment(db, userOf(req), req.body as PaymentInput, req.get('idempotency-key') ?? null, channel);

/**
 * `plainDb`: the same database on a pool created with `pipeline: false`, for the plain route;
 * `pool`: the pool under `db`, for the hand-written route.
 */
export function benchHttpApp(db: ShopDb, plainDb: ShopDb, pool: pg.Pool, redis: Redis, redisPrefix: string): Express {
  const app = express();
  app.use(express.json({ limit: '64kb' }));

  app.post(PAYMENT_ROUTES.bare, validPayment, async (req, res) => {
    const payment = await pay(db, req, 'bare');
    res.status(201).location(`/payments/${payment.id}`).json(payment);
  });

  const ours = (channel: 'ours' | 'plain', on: ShopDb, prepare: boolean | undefined) =>
    idempotent(
      on,
      async (req, tx) => {
        const payment = await pay(tx, req, channel);
        return { status: 201, body: payment, headers: { location: `/payments/${payment.id}` } };
      },
      { scope: userOf, ...(prepare === undefined ? {} : { prepare }) },
    );
  // Defaults: named statements and pipeline mode on the pool the library uses itself.
  app.post(PAYMENT_ROUTES.ours, validPayment, ours('ours', db, undefined));
  // Ours with both switched off (prepare: false, a pool created with pipeline: false): what 0.1 did by default.
  app.post(PAYMENT_ROUTES.plain, validPayment, ours('plain', plainDb, false));

  // The reference: what a careful engineer writes by hand with raw pg for the
  // same guarantee. BEGIN, claim, the payment, store, COMMIT: 5 round trips; a
  // conflicting claim reads the stored answer instead.
  app.post(PAYMENT_ROUTES.handwritten, validPayment, async (req, res) => {
    const key = req.get('idempotency-key');
    if (!key) throw new ShopRefusal(400, 'KEY_REQUIRED', 'send an Idempotency-Key');
    const [scope, input] = [userOf(req), req.body as PaymentInput];
    const client = await pool.connect();
    let answer: { status: number; body: unknown; location: string };
    try {
      await client.query('begin');
      const claimed = await client.query(
        `insert into idempotency_keys (scope, key, fingerprint, status, expires_at)
         values ($1, $2, $3, 'started', now() + interval '1 day') on conflict (scope, key) do nothing returning 1`,
        [scope, key, 'POST /handwritten/payments'],
      );
      if (claimed.rowCount === 1) {
        // The same business code as every other route, on this transaction's connection: only the idempotency layer differs.
        const payment = await createPayment(drizzle({ client }), scope, input, key, 'handwritten');
        answer = { status: 201, body: payment, location: `/payments/${payment.id}` };
        await client.query(
          `update idempotency_keys set status = 'completed', response = $3, completed_at = now(), expires_at = now() + interval '1 day'
           where scope = $1 and key = $2`,
          [scope, key, answer],
        );
      } else {
        const { rows } = await client.query<{ response: typeof answer }>('select response from idempotency_keys where scope = $1 and key = $2', [scope, key]);
        answer = rows[0]!.response;
      }
      await client.query('commit');
    } catch (error) {
      await client.query('rollback').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
    res.status(answer.status).location(answer.location).json(answer.body);
  });

  app.post(PAYMENT_ROUTES.redis, validPayment, redisIdempotency(redis, { prefix: redisPrefix, scope: userOf }), async (req, res) => {
    const payment = await pay(db, req, 'redis');
    res.status(201).location(`/payments/${payment.id}`).json(payment);
  });

  app.use((error: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(error);
    if (error instanceof ShopRefusal) return void res.status(error.status).json({ code: error.code, detail: error.message });
    console.error(error);
    res.status(500).json({ code: 'INTERNAL' });
  });
  return app;
}
