import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { IdempotencyDatabase, TransactionOf } from '../../driver/database.js';
import { PROBLEM_CONTENT_TYPE } from '../problem.js';
import type { Fingerprint } from '../../core/fingerprint.js';
import { fingerprintParts, type RouteOptions } from '../options.js';
import { idempotentRoute, type HttpAdapter, type RouteHandler } from '../route.js';
import { readBodyAsReceived } from './body.js';
import { guardResponse } from './guard.js';
import { sendResponse } from './send.js';

/** A route handler that runs in the key's transaction and returns its response. */
export type IdempotentHandler<TTx> = RouteHandler<Request, TTx>;

/** Options of `idempotent`: the core's (TTL, wait or reject, …) plus how to read a request. */
export type IdempotentRouteOptions = RouteOptions<Request>;

/**
 * The default fingerprint: method, path, query string (as received, undecoded)
 * and body as received, so a reused key on another request is caught. The body
 * is what a parser left in `req.body` (any plain JSON value), or the SHA-256 of
 * its raw bytes when it is bytes (`express.raw()`, or no parser at all: the
 * route then reads them itself), or null when the request has none. Compose it
 * to add more, e.g. a header that selects behaviour.
 *
 * @example
 * idempotent(db, handler, { scope, fingerprint: (req) => ({ ...requestFingerprint(req), currency: req.get('x-currency') ?? null }) })
 */
export function requestFingerprint(req: Request): { method: string; path: string; query: string | null; body: Fingerprint } {
  return fingerprintParts(req.method, req.originalUrl, req.body);
}

/** How the Express routes read a request and write a response. */
export const expressAdapter: HttpAdapter<Request, Response> = {
  method: (req) => req.method,
  target: (req) => req.originalUrl,
  fingerprint: requestFingerprint,
  keyLines: (req) => req.headersDistinct['idempotency-key'],
  readBody: readBodyAsReceived,
  readsEveryBody: false,
  guard: guardResponse,
  answered: (res) => res.headersSent,
  send: sendResponse,
  sendProblem(res, problem, retryAfter, closeConnection) {
    // Nothing has committed when a problem goes out, so Express may do the sending.
    if (closeConnection) res.setHeader('connection', 'close');
    res.status(problem.status).type(PROBLEM_CONTENT_TYPE);
    if (retryAfter !== undefined) res.setHeader('Retry-After', String(retryAfter));
    res.send(JSON.stringify(problem));
  },
};

/**
 * An Express route handler that runs `handler` at most once per
 * `Idempotency-Key` within the required `scope` (whose keys these are). The
 * handler's writes go through `tx`, the transaction that also claims the key
 * and stores the response, so the key, the effects and the stored answer
 * commit together; the answer is sent only after COMMIT succeeded. A replay
 * costs one SELECT and opens no transaction.
 *
 * A thrown error or a non-final status (5xx, 408, 425 and 429 by default)
 * rolls everything back: nothing is stored and a retry runs the handler again.
 * Thrown errors go to `next`; the library's own errors become RFC 9457
 * problem details.
 *
 * The handler must return its response, never write to `res` itself: while
 * it runs, every method of `res` that sends (`json`, `send`, `end`, `write`,
 * `setHeader`, `status`, …) throws at once, and the transaction rolls back
 * even if the handler catches that error.
 *
 * @example
 * app.post('/payments', idempotent(db, async (req, tx) => {
 *   const [charge] = await tx.insert(charges).values({ amount: req.body.amount }).returning();
 *   return { status: 201, body: charge, headers: { location: `/payments/${charge.id}` } };
 * }, { scope: (req) => req.customerId })); // set by your authentication middleware
 */
export function idempotent<TDb extends IdempotencyDatabase>(
  db: TDb,
  handler: IdempotentHandler<TransactionOf<TDb>>,
  options: IdempotentRouteOptions,
): RequestHandler {
  const route = idempotentRoute(db, handler as IdempotentHandler<IdempotencyDatabase>, options, expressAdapter);
  return (req: Request, res: Response, next: NextFunction) => route.serve(req, res).catch(next);
}
