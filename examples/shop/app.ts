import { randomUUID } from 'node:crypto';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type PgBoss from 'pg-boss';
import type { TransactionOf } from 'drizzle-idempotency';
import { idempotent, idempotentWorkflow, type IdempotentResponse, type IdempotentRouteOptions } from 'drizzle-idempotency/express';
import { GatewayDeclinedError, GatewayOutcomeUnknownError, type GatewayClient } from '../gateway/client.js';
import { crashPoint } from './crash-points.js';
import { ShopRefusal, type ShopDb } from './db.js';
import { getStock, reserveAll, setStock } from './inventory.js';
import { queueOrderConfirmation, queueWelcome } from './notifications.js';
import { createOrder } from './orders.js';
import { createPendingPayment, getPayment, listPayments, settlePayment } from './payments.js';
import type { PayInput, PaymentWorkflow } from './payment-workflow.js';
import { problem, PROBLEM } from './problem.js';
import { parseEmail, parseOrder, parsePayment, parseQuantity, parseSku, parseStock } from './validation.js';

/** What the shop's payments go through: the gateway, and the workflow that charges it once per key. */
export interface ShopPayments {
  gateway: GatewayClient;
  workflow: PaymentWorkflow;
  /** Hears of every payment answered 5xx (the gateway failed, its outcome unknown): the key stays started and the retry or the completer resumes it. (Default: a line on stderr) */
  onError?: (error: unknown) => void;
}

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
 * the naive payment route is the contrast the demo measures. Payments go
 * through the payment gateway as leased work (`payments.workflow`); e-mails
 * (welcome, order confirmation) are pg-boss jobs enqueued in the request's
 * transaction.
 *
 * @example
 * const gateway = gatewayClient(process.env.GATEWAY_URL!);
 * const app = shopApp(db, boss, { gateway, workflow: paymentWorkflow(gateway) }); app.listen(3000);
 */
export function shopApp(db: ShopDb, boss: PgBoss, payments: ShopPayments) {
  const app = express();
  app.use(express.json({ limit: '64kb' }));
  // Every POST: scoped by the caller, and business refusals (ShopRefusal) are
  // answers to store and replay, not errors to roll back.
  const keyedRoute = (
    handler: (req: Request, tx: TransactionOf<ShopDb>) => Promise<IdempotentResponse>,
    options: Omit<IdempotentRouteOptions, 'scope'> = {},
  ) => idempotent(db, (req, tx) => handler(req, tx).catch(refusal), { ...options, scope: userOf });

  app.get('/healthz', (_req, res) => void json(res, 200, { ok: true }));

  // Leased, not one transaction: the gateway is outside the database. The
  // workflow's steps commit one by one and a crash resumes from the last.
  app.post(
    '/payments',
    (_req, _res, next) => {
      crashPoint('before-claim');
      next();
    },
    validBody(parsePayment),
    idempotentWorkflow(db, payments.workflow, {
      scope: userOf,
      input: (req): PayInput => ({ userId: userOf(req), requestKey: req.get('idempotency-key') ?? '', ...(req.body as { amount: number; currency: string }) }),
      ...(payments.onError && { onError: payments.onError }),
    }),
  );
  app.get('/payments', async (req, res) => void json(res, 200, { payments: await listPayments(db, userOf(req)) }));
  app.get('/payments/:id', async (req, res) => {
    const payment = /^[0-9a-f-]{36}$/.test(req.params.id) ? await getPayment(db, userOf(req), req.params.id) : undefined;
    if (!payment) throw new ShopRefusal(404, 'NOT_FOUND', 'no such payment');
    json(res, 200, payment);
  });

  // No key of its own: a fresh gateway key per attempt, as a client that
  // makes one up per request does. Each retry is another charge; the demo's storm shows what that costs.
  app.post('/naive/payments', validBody(parsePayment), async (req, res) => {
    const payment = await createPendingPayment(db, userOf(req), req.body, req.get('idempotency-key') ?? null, 'naive');
    try {
      const charge = await payments.gateway.charge({ ...(req.body as { amount: number; currency: string }), reference: payment.id }, { idempotencyKey: randomUUID() });
      json(res, 201, await settlePayment(db, payment.id, { status: 'paid', chargeId: charge.id }));
    } catch (error) {
      if (!(error instanceof GatewayDeclinedError)) throw error;
      await settlePayment(db, payment.id, { status: 'declined', declineCode: error.reason });
      throw new ShopRefusal(402, 'PAYMENT_DECLINED', `the gateway declined the payment: ${error.reason}`);
    }
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
    // The naive endpoint's charge whose outcome is unknown: it cannot tell whether the money was taken.
    if (error instanceof GatewayOutcomeUnknownError) return void res.status(502).type(PROBLEM).json(problem(502, 'GATEWAY_OUTCOME_UNKNOWN', error.message));
    const status = (error as { status?: number }).status;
    if (status === 400) return void res.status(400).type(PROBLEM).json(problem(400, 'INVALID_JSON', 'the body is not valid JSON'));
    console.error(error);
    res.status(500).type(PROBLEM).json(problem(500, 'INTERNAL', 'internal error; retry with the same Idempotency-Key'));
  });
  return app;
}
