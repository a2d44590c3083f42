// The shop's POST /payments three ways, in one app so they share the process,
// the pool and the JSON parser: only the idempotency layer differs. Each route
// validates first, as the shop does, so a bad body never touches a key.
import express, { type Express, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { Redis } from 'ioredis';
import { idempotent } from 'drizzle-idempotency/express';
import { ShopRefusal, type ShopDb } from '../examples/shop/db.js';
import { createPayment, type Payment, type PaymentInput } from '../examples/shop/payments.js';
import { parsePayment } from '../examples/shop/validation.js';
import { redisIdempotency } from './redis-middleware.js';

/** Route of each variant; the payment's `channel` column names the variant too. */
export const PAYMENT_ROUTES = { bare: '/bare/payments', ours: '/ours/payments', tuned: '/tuned/payments', redis: '/redis/payments' } as const;
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

/** `pipelinedDb`: the same database on a pool created with `pipeline: true`, for the tuned route. */
export function benchHttpApp(db: ShopDb, pipelinedDb: ShopDb, redis: Redis, redisPrefix: string): Express {
  const app = express();
  app.use(express.json({ limit: '64kb' }));

  app.post(PAYMENT_ROUTES.bare, validPayment, async (req, res) => {
    const payment = await pay(db, req, 'bare');
    res.status(201).location(`/payments/${payment.id}`).json(payment);
  });

  const ours = (channel: 'ours' | 'tuned', on: ShopDb, prepare: boolean) =>
    idempotent(
      on,
      async (req, tx) => {
        const payment = await pay(tx, req, channel);
        return { status: 201, body: payment, headers: { location: `/payments/${payment.id}` } };
      },
      { scope: userOf, prepare },
    );
  app.post(PAYMENT_ROUTES.ours, validPayment, ours('ours', db, false));
  // Ours again, tuned for node-postgres: named statements, BEGIN with the claim and the store with COMMIT.
  app.post(PAYMENT_ROUTES.tuned, validPayment, ours('tuned', pipelinedDb, true));

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
