import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { withIdempotencyOutcome } from '../core/with-idempotency.js';
import { isConnectionLost } from '../driver/connection-loss.js';
import { isTransaction, type IdempotencyDatabase, type TransactionOf } from '../driver/database.js';
import { inTransaction, listenForIdleErrors } from '../driver/pool-transaction.js';
import { refuseDriverWithoutTransactions } from '../driver/interactive-transactions.js';
import {
  IdempotencyConnectionLostError,
  IdempotencyError,
  IdempotencyKeyInvalidError,
  IdempotencyOptionsInvalidError,
} from '../shared/errors.js';
import { keyFromHeaderLines } from '../shared/header.js';
import { serializeResult } from '../core/result.js';
import { resolveRouteOptions, type IdempotentRouteOptions, type ResolvedRouteOptions } from './options.js';
import { normalizeResponse, sendResponse, storedForm, type IdempotentResponse, type NormalizedResponse } from './response.js';
import { commitFailedProblem, problemOf, PROBLEM_CONTENT_TYPE, type ProblemDetails } from './problem.js';
import { guardResponse, writeError, type ResponseGuard } from './guard.js';
import { readBodyAsReceived, RequestProblem } from './body.js';

/** A route handler that runs in the key's transaction and returns its response. */
export type IdempotentHandler<TTx> = (req: Request, tx: TTx) => Promise<IdempotentResponse> | IdempotentResponse;

/** Carries a non-final response (5xx by default) out of the transaction, rolling it back. */
class NotFinal extends Error {
  constructor(readonly response: NormalizedResponse) {
    super(`status ${response.status} is not final: rolled back`);
  }
}

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
  if (isTransaction(db)) {
    throw new IdempotencyOptionsInvalidError('idempotent() needs a database, not a transaction: it opens the transaction itself');
  }
  refuseDriverWithoutTransactions(db, 'idempotent()');
  const o = resolveRouteOptions(options);
  listenForIdleErrors(db);
  const route = new Route(db, handler as IdempotentHandler<IdempotencyDatabase>, o);
  return (req: Request, res: Response, next: NextFunction) => route.serve(req, res).catch(next);
}

class Route {
  constructor(
    private readonly db: IdempotencyDatabase,
    private readonly handler: IdempotentHandler<IdempotencyDatabase>,
    private readonly o: ResolvedRouteOptions,
  ) {}

  async serve(req: Request, res: Response): Promise<void> {
    if (!this.o.methods.has(req.method.toUpperCase())) return this.runWithoutKey(req, res);
    let key: string | undefined;
    try {
      key = keyFromHeaderLines(req.headersDistinct['idempotency-key']);
      if (key === undefined && this.o.required) throw new IdempotencyKeyInvalidError('this request needs an Idempotency-Key header');
      // Before the fingerprint, and also without a key, so the handler sees the same req.body either way.
      await readBodyAsReceived(req, this.o.maxBodyBytes);
    } catch (error) {
      if (error instanceof IdempotencyError) return this.sendProblem(res, problemOf(error));
      if (error instanceof RequestProblem) {
        if (error.closeConnection) res.setHeader('connection', 'close');
        return this.sendProblem(res, error.problem);
      }
      throw error;
    }
    if (key === undefined) return this.runWithoutKey(req, res);
    return this.runWithKey(req, res, key);
  }

  private async runWithKey(req: Request, res: Response, key: string): Promise<void> {
    let fresh: NormalizedResponse | undefined;
    let answer: { response: NormalizedResponse; replayed: boolean };
    try {
      // lookupFirst: replays skip the handler's transaction (one SELECT; on a
      // node-postgres pool, the read travels with BEGIN and the claim).
      const options = { ...this.o.core, scope: await this.o.scope(req), fingerprint: this.o.fingerprint(req), lookupFirst: true };
      const guard = guardResponse(res);
      let outcome;
      try {
        outcome = await withIdempotencyOutcome(
          this.db,
          key,
          async (tx) => {
            const response = await this.runHandler(req, res, guard, tx);
            fresh = response;
            return storedForm(response, this.o.storedHeaders);
          },
          options,
        );
      } finally {
        guard.release();
      }
      // A fresh answer goes out with the body as jsonb gave it back: byte for byte what a replay will send.
      answer = outcome.replayed
        ? { response: outcome.value as NormalizedResponse, replayed: true }
        : { response: { ...fresh!, body: outcome.value.body }, replayed: false };
    } catch (error) {
      return this.fail(res, error, fresh !== undefined);
    }
    sendAfterCommit(res, answer.response, answer.replayed, 'its answer is stored: a retry with the same key replays it');
  }

  private async runWithoutKey(req: Request, res: Response): Promise<void> {
    let fresh: NormalizedResponse | undefined;
    const guard = guardResponse(res);
    try {
      await inTransaction(this.db, this.o.core.transaction, async (tx) => {
        const response = await this.runHandler(req, res, guard, tx);
        // Nothing is stored here, but a body res.json() would choke on must
        // still fail before COMMIT, not as a 500 after the effects committed.
        serializeResult(response.body, Number.MAX_SAFE_INTEGER);
        fresh = response;
      });
    } catch (error) {
      guard.release();
      return this.fail(res, error, fresh !== undefined);
    }
    guard.release();
    sendAfterCommit(res, fresh!, false, 'it had no key, so a retry runs it again');
  }

  /**
   * Runs the handler in `tx` while `res` is guarded; a write to `res` (even one
   * whose error the handler caught) or a non-final status throws, so `tx` rolls back.
   */
  private async runHandler(req: Request, res: Response, guard: ResponseGuard, tx: IdempotencyDatabase): Promise<NormalizedResponse> {
    const response = normalizeResponse(await guard.run(() => this.handler(req, tx)));
    if (guard.violation !== undefined) throw writeError(guard.violation);
    // Someone else answered meanwhile (a timeout middleware, or a write round the
    // guard): the client did not get this result, so it must not commit either.
    if (res.headersSent) throw new Error('the response was sent by other code while the idempotent handler ran; rolled back, so a retry runs it again');
    if (!this.o.isFinal(response.status)) throw new NotFinal(response);
    return response;
  }

  /** Answers after a rollback: `handlerDone` means the handler succeeded, so storing or COMMIT failed. */
  private fail(res: Response, error: unknown, handlerDone: boolean): void {
    if (error instanceof NotFinal) return sendResponse(res, error.response, false);
    if (error instanceof IdempotencyError) return this.sendProblem(res, problemOf(error));
    // Never a 2xx for what did not commit; a retry with the same key is safe.
    if (handlerDone) return this.sendProblem(res, commitFailedProblem());
    if (isConnectionLost(error)) return this.sendProblem(res, problemOf(new IdempotencyConnectionLostError('the database connection was lost; retry')));
    throw error;
  }

  private sendProblem(res: Response, problem: ProblemDetails): void {
    // Nothing has committed when a problem goes out, so Express may do the sending.
    res.status(problem.status).type(PROBLEM_CONTENT_TYPE);
    if (problem.retryable) res.setHeader('Retry-After', String(this.o.retryAfter));
    res.send(JSON.stringify(problem));
  }
}

/**
 * Sends what has committed. Whatever fails here (a socket gone, a wrapper
 * another middleware put on `res`) goes to `next` as an error that says the
 * request took effect, never as "nothing was stored": the client's retry with
 * the same key gets the stored answer.
 */
function sendAfterCommit(res: Response, response: NormalizedResponse, replayed: boolean, afterwards: string): void {
  try {
    sendResponse(res, response, replayed);
  } catch (error) {
    throw new Error(`the request committed, but sending its answer failed; ${afterwards}`, { cause: error });
  }
}
