import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type PgBoss from 'pg-boss';
import type { TransactionOf } from 'drizzle-idempotency';
import { idempotent, type IdempotentResponse, type IdempotentRouteOptions } from 'drizzle-idempotency/express';
import { ShopRefusal, type ShopDb } from './db.js';
import { getStock, reserveAll, setStock } from './inventory.js';
import { queueOrderConfirmation, queueWelcome } from './notifications.js';
import { createOrder } from './orders.js';
import { createPayment, getPayment, listPayments } from './payments.js';
import { parseEmail, parseOrder, parsePayment, parseQuantity, parseSku, parseStock } from './validation.js';

const PROBLEM = 'application/problem+json';

const problem = (status: number, code: string, detail: string) => ({
  type: `https://shop.example/problems/${code.toLowerCase().replaceAll('_', '-')}`,
  title: code.replaceAll('_', ' ').toLowerCase(),
  status,
  detail,
  code,
});

/** A business refusal as a stored, replayable answer. */
function refusal(error: unknown): IdempotentResponse {
  if (!(error instanceof ShopRefusal)) throw error;
  return { status: error.status, body: problem(error.status, error.code, error.message), headers: { 'content-type': PROBLEM } };
}

/** The caller: X-User-Id, which is also the idempotency scope. */
function userOf(req: Request): string {
  const user = req.get('x-user-id');
  if (!user || user.length > 128) throw new ShopRefusal(401, 'UNAUTHENTICATED', 'send your user id in X-User-Id');
  return user;
}

/** Checks the body (and caller) before any key is claimed: a bad request changes nothing. */
const validBody =
  (parse: (body: unknown, req: Request) => unknown): RequestHandler =>
  (req, _res, next) => {
    userOf(req);
    req.body = parse(req.body, req);
    next();
  };

const json = <T>(res: Response, status: number, body: T) => res.status(status).json(body);

/**
 * The shop's routes. `POST`s are idempotent per (X-User-Id, Idempotency-Key);
 * the naive payment route is the contrast the demo measures. E-mails (welcome,
 * order confirmation) are pg-boss jobs enqueued in the request's transaction.
 *
 * @example
 * const app = shopApp(drizzle({ client: pool }), boss); app.listen(3000);
 */
export function shopApp(db: ShopDb, boss: PgBoss) {
  const app = express();
  app.use(express.json({ limit: '64kb' }));
  // Every POST: scoped by the caller, and business refusals (ShopRefusal) are
  // answers to store and replay, not errors to roll back.
  const keyedRoute = (
    handler: (req: Request, tx: TransactionOf<ShopDb>) => Promise<IdempotentResponse>,
    options: Omit<IdempotentRouteOptions, 'scope'> = {},
  ) => idempotent(db, (req, tx) => handler(req, tx).catch(refusal), { ...options, scope: userOf });

  app.get('/healthz', (_req, res) => void json(res, 200, { ok: true }));

  app.post(
    '/payments',
    validBody(parsePayment),
    keyedRoute(async (req, tx) => {
      const payment = await createPayment(tx, userOf(req), req.body, req.get('idempotency-key') ?? null);
      return { status: 201, body: payment, headers: { location: `/payments/${payment.id}` } };
    }),
  );
  app.get('/payments', async (req, res) => void json(res, 200, { payments: await listPayments(db, userOf(req)) }));
  app.get('/payments/:id', async (req, res) => {
    const payment = /^[0-9a-f-]{36}$/.test(req.params.id) ? await getPayment(db, userOf(req), req.params.id) : undefined;
    if (!payment) throw new ShopRefusal(404, 'NOT_FOUND', 'no such payment');
    json(res, 200, payment);
  });

  // No key: payments that a retry doubles. The demo's storm shows what that costs.
  app.post('/naive/payments', validBody(parsePayment), async (req, res) => {
    json(res, 201, await createPayment(db, userOf(req), req.body, req.get('idempotency-key') ?? null, 'naive'));
  });

  app.put('/inventory/:sku', async (req, res) => json(res, 200, await setStock(db, parseSku(req.params.sku), parseStock(req.body))));
  app.get('/inventory/:sku', async (req, res) => {
    const level = await getStock(db, parseSku(req.params.sku));
    if (!level) throw new ShopRefusal(404, 'UNKNOWN_SKU', 'no such SKU');
    json(res, 200, level);
  });
  app.post(
    '/inventory/:sku/reserve',
    validBody((body, req) => ({ sku: parseSku(req.params.sku), quantity: parseQuantity(body) })),
    keyedRoute(async (req, tx) => {
      const [level] = await reserveAll(tx, [req.body as { sku: string; quantity: number }]);
      return { status: 200, body: { sku: level!.sku, remaining: level!.stock } };
    }),
  );

  app.post(
    '/orders',
    validBody(parseOrder),
    keyedRoute(async (req, tx) => {
      const order = await createOrder(tx, userOf(req), req.body, req.get('idempotency-key') ?? null);
      // The confirmation's job commits with the order: no order without its e-mail, no e-mail without its order.
      await queueOrderConfirmation(tx, boss, userOf(req), order.id);
      return { status: 201, body: order, headers: { location: `/orders/${order.id}` } };
    }),
  );

  app.post(
    '/notifications/welcome',
    validBody(parseEmail),
    // 'reject': a duplicate that arrives while the first is still running gets 409 +
    // Retry-After at once instead of holding a connection; the client retries.
    keyedRoute(async (req, tx) => ({ status: 202, body: await queueWelcome(tx, boss, req.body, req.get('idempotency-key') ?? null) }), {
      onInFlight: 'reject',
    }),
  );

  app.use((error: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(error);
    if (error instanceof ShopRefusal) return void res.status(error.status).type(PROBLEM).json(problem(error.status, error.code, error.message));
    const status = (error as { status?: number }).status;
    if (status === 400) return void res.status(400).type(PROBLEM).json(problem(400, 'INVALID_JSON', 'the body is not valid JSON'));
    console.error(error);
    res.status(500).type(PROBLEM).json(problem(500, 'INTERNAL', 'internal error; retry with the same Idempotency-Key'));
  });
  return app;
}
