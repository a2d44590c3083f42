import { withIdempotencyOutcome } from '../core/with-idempotency.js';
import { serializeResult } from '../core/result.js';
import { isConnectionLost } from '../driver/connection-loss.js';
import { isTransaction, type IdempotencyDatabase } from '../driver/database.js';
import { inTransaction, listenForIdleErrors } from '../driver/pool-transaction.js';
import { refuseDriverWithoutTransactions } from '../driver/interactive-transactions.js';
import {
  IdempotencyConnectionLostError,
  IdempotencyError,
  IdempotencyKeyInvalidError,
  IdempotencyOptionsInvalidError,
} from '../shared/errors.js';
import { keyFromHeaderLines } from '../shared/header.js';
import { RequestProblem } from './body.js';
import { resolveRouteOptions, type RequestView, type ResolvedRouteOptions, type RouteOptions } from './options.js';
import { commitFailedProblem, problemOf, type ProblemDetails } from './problem.js';
import { normalizeResponse, storedForm, type IdempotentResponse, type NormalizedResponse } from './response.js';

/** A route handler that runs in the key's transaction and returns its response. */
export type RouteHandler<TReq, TTx> = (req: TReq, tx: TTx) => Promise<IdempotentResponse> | IdempotentResponse;

/** Keeps a handler from answering on its own while it runs (see the Express adapter's guard). */
export interface ResponseGuard {
  /** The first sending method the handler called, even if it caught the error. */
  readonly violation: string | undefined;
  /** Runs the handler: what it calls, now or later, is checked. */
  run<T>(handler: () => T): T;
  /** From now on every method behaves as it did before the guard. */
  release(): void;
}

/** For frameworks whose handler is never given the response: nothing to guard. */
export const NO_GUARD: ResponseGuard = { violation: undefined, run: (handler) => handler(), release() {} };

/**
 * What a framework adapter provides: how to read its request and write its
 * response. `TReq` is what the handler, the scope and the fingerprint get;
 * `TRes` is where the answer goes.
 */
export interface HttpAdapter<TReq, TRes> extends RequestView<TReq> {
  /** All lines of the `Idempotency-Key` header, undefined when there is none. */
  keyLines(req: TReq): readonly string[] | undefined;
  /** Makes the body as received available to the fingerprint and the handler; throws a `RequestProblem`. */
  readBody(req: TReq, maxBytes: number): Promise<void>;
  /** Also read the body of requests that pass through (other methods): no framework parsed it for the handler. */
  readsEveryBody: boolean;
  guard(res: TRes): ResponseGuard;
  /** True when other code answered while the handler ran. */
  answered(res: TRes): boolean;
  /** Writes an answer; `expiresAt` is set when the expiry header is asked for. */
  send(res: TRes, response: NormalizedResponse, replayed: boolean, expiresAt: Date | undefined): void;
  /** Writes a problem; `retryAfter` is set when it is retryable. */
  sendProblem(res: TRes, problem: ProblemDetails, retryAfter: number | undefined, closeConnection: boolean): void;
}

/** Carries a non-final response (5xx by default) out of the transaction, rolling it back. */
class NotFinal extends Error {
  constructor(readonly response: NormalizedResponse) {
    super(`status ${response.status} is not final: rolled back`);
  }
}

/**
 * The framework-neutral idempotent route: key, body, scope and fingerprint,
 * then the handler in the key's transaction, and the answer only after
 * COMMIT. Errors that are not the library's are thrown to the adapter (to
 * Express' `next`, Fastify's error handler, the Web caller).
 *
 * @example
 * const route = idempotentRoute(db, handler, { scope: 'billing' }, expressAdapter);
 * app.post('/payments', (req, res, next) => route.serve(req, res).catch(next));
 */
export function idempotentRoute<TReq, TRes>(
  db: IdempotencyDatabase,
  handler: RouteHandler<TReq, IdempotencyDatabase>,
  options: RouteOptions<TReq>,
  adapter: HttpAdapter<TReq, TRes>,
): Route<TReq, TRes> {
  if (isTransaction(db)) {
    throw new IdempotencyOptionsInvalidError('idempotent() needs a database, not a transaction: it opens the transaction itself');
  }
  refuseDriverWithoutTransactions(db, 'idempotent()');
  const o = resolveRouteOptions(options, adapter);
  listenForIdleErrors(db);
  return new Route(db, handler, o, adapter);
}

export class Route<TReq, TRes> {
  constructor(
    private readonly db: IdempotencyDatabase,
    private readonly handler: RouteHandler<TReq, IdempotencyDatabase>,
    private readonly o: ResolvedRouteOptions<TReq>,
    private readonly adapter: HttpAdapter<TReq, TRes>,
  ) {}

  async serve(req: TReq, res: TRes): Promise<void> {
    const keyed = this.o.methods.has(this.adapter.method(req).toUpperCase());
    if (!keyed && !this.adapter.readsEveryBody) return this.runWithoutKey(req, res);
    let key: string | undefined;
    try {
      if (keyed) {
        key = keyFromHeaderLines(this.adapter.keyLines(req));
        if (key === undefined && this.o.required) throw new IdempotencyKeyInvalidError('this request needs an Idempotency-Key header');
      }
      // Before the fingerprint, and also without a key, so the handler sees the same body either way.
      await this.adapter.readBody(req, this.o.maxBodyBytes);
    } catch (error) {
      const refused = refusedRequest(error);
      return this.sendProblem(res, refused.problem, refused.closeConnection);
    }
    if (key === undefined) return this.runWithoutKey(req, res);
    return this.runWithKey(req, res, key);
  }

  private async runWithKey(req: TReq, res: TRes, key: string): Promise<void> {
    let fresh: NormalizedResponse | undefined;
    let answer: { response: NormalizedResponse; replayed: boolean; expiresAt: Date | undefined };
    try {
      // lookupFirst: replays skip the handler (one SELECT; on a node-postgres
      // pool, while replays are rare, the read travels with BEGIN and the claim).
      const options = { ...this.o.core, scope: await this.o.scope(req), fingerprint: this.o.fingerprint(req), lookupFirst: true };
      const guard = this.adapter.guard(res);
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
        ? { response: outcome.value as NormalizedResponse, replayed: true, expiresAt: outcome.expiresAt }
        : { response: { ...fresh!, body: outcome.value.body }, replayed: false, expiresAt: outcome.expiresAt };
    } catch (error) {
      return this.fail(res, error, fresh !== undefined);
    }
    this.sendAfterCommit(res, answer.response, answer.replayed, answer.expiresAt, 'its answer is stored: a retry with the same key replays it');
  }

  private async runWithoutKey(req: TReq, res: TRes): Promise<void> {
    let fresh: NormalizedResponse | undefined;
    const guard = this.adapter.guard(res);
    try {
      await inTransaction(this.db, this.o.core.transaction, async (tx) => {
        const response = await this.runHandler(req, res, guard, tx);
        // Nothing is stored here, but a body that cannot be sent as JSON must
        // still fail before COMMIT, not as a 500 after the effects committed.
        serializeResult(response.body, Number.MAX_SAFE_INTEGER);
        fresh = response;
      });
    } catch (error) {
      guard.release();
      return this.fail(res, error, fresh !== undefined);
    }
    guard.release();
    this.sendAfterCommit(res, fresh!, false, undefined, 'it had no key, so a retry runs it again');
  }

  /**
   * Runs the handler in `tx` while `res` is guarded; a write to `res` (even one
   * whose error the handler caught) or a non-final status throws, so `tx` rolls back.
   */
  private async runHandler(req: TReq, res: TRes, guard: ResponseGuard, tx: IdempotencyDatabase): Promise<NormalizedResponse> {
    // Called as a plain function: `this` would be this route, whose `db` is outside the transaction.
    const handler = this.handler;
    const response = normalizeResponse(await guard.run(() => handler(req, tx)));
    if (guard.violation !== undefined) throw writeError(guard.violation);
    // Someone else answered meanwhile (a timeout middleware, or a write round the
    // guard): the client did not get this result, so it must not commit either.
    if (this.adapter.answered(res)) {
      throw new Error('the response was sent by other code while the idempotent handler ran; rolled back, so a retry runs it again');
    }
    if (!this.o.isFinal(response.status)) throw new NotFinal(response);
    return response;
  }

  /** Answers after a rollback: `handlerDone` means the handler succeeded, so storing or COMMIT failed. */
  private fail(res: TRes, error: unknown, handlerDone: boolean): void {
    if (error instanceof NotFinal) return this.adapter.send(res, error.response, false, undefined);
    if (error instanceof IdempotencyError) return this.sendProblem(res, problemOf(error), false);
    // Never a 2xx for what did not commit; a retry with the same key is safe.
    if (handlerDone) return this.sendProblem(res, commitFailedProblem(), false);
    if (isConnectionLost(error)) return this.sendProblem(res, problemOf(new IdempotencyConnectionLostError('the database connection was lost; retry')), false);
    throw error;
  }

  private sendProblem(res: TRes, problem: ProblemDetails, closeConnection: boolean): void {
    this.adapter.sendProblem(res, problem, problem.retryable ? this.o.retryAfter : undefined, closeConnection);
  }

  /**
   * Sends what has committed. Whatever fails here (a socket gone, a wrapper
   * another middleware put on the response) is thrown as an error that says
   * the request took effect, never as "nothing was stored": the client's
   * retry with the same key gets the stored answer.
   */
  private sendAfterCommit(res: TRes, response: NormalizedResponse, replayed: boolean, expiresAt: Date | undefined, afterwards: string): void {
    sendCommitted(this.adapter, res, response, replayed, expiresAt, afterwards);
  }
}

/**
 * Sends an answer that has committed; a failure to send is thrown as an error
 * that says the request took effect and what a retry with the key gets.
 *
 * @example
 * sendCommitted(adapter, res, response, false, undefined, 'its answer is stored: a retry with the same key replays it');
 */
export function sendCommitted<TReq, TRes>(
  adapter: HttpAdapter<TReq, TRes>,
  res: TRes,
  response: NormalizedResponse,
  replayed: boolean,
  expiresAt: Date | undefined,
  afterwards: string,
): void {
  try {
    adapter.send(res, response, replayed, expiresAt);
  } catch (error) {
    throw new Error(`the request committed, but sending its answer failed; ${afterwards}`, { cause: error });
  }
}

/**
 * The problem for a request refused before anything is claimed (a bad key, a
 * body that could not be read); anything else is rethrown.
 *
 * @example
 * try { await adapter.readBody(req, max) } catch (error) { const { problem, closeConnection } = refusedRequest(error) }
 */
export function refusedRequest(error: unknown): { problem: ProblemDetails; closeConnection: boolean } {
  if (error instanceof IdempotencyError) return { problem: problemOf(error), closeConnection: false };
  if (error instanceof RequestProblem) return { problem: error.problem, closeConnection: error.closeConnection };
  throw error;
}

/** The error a handler gets (or the route throws) when the handler wrote to the response itself. */
export function writeError(method: string): Error {
  return new Error(
    `an idempotent handler must return its response ({ status, body, headers }), not call res.${method}(): ` +
      'the answer may leave only after COMMIT',
  );
}
