// Until `idempotentWorkflow` from 'drizzle-idempotency/express' is on main:
// the same route by hand, a plain Express handler around runWorkflowOutcome.
// Switch to idempotentWorkflow (same options) once it lands.
import type { Request, RequestHandler, Response } from 'express';
import { IdempotencyError, IdempotencyInFlightError, runWorkflowOutcome, type Workflow } from 'drizzle-idempotency';
import type { IdempotentResponse } from 'drizzle-idempotency/express';
import type { ShopDb } from './db.js';
import { problem, PROBLEM } from './problem.js';

export interface WorkflowRouteOptions<I> {
  /** The idempotency scope: the caller. */
  scope: (req: Request) => string;
  /** What the workflow runs on, stored with the key. */
  input: (req: Request) => I;
  /** Hears of every 5xx: the key stays started, a retry or the completer resumes it. (Default: a line on stderr) */
  onError?: (error: unknown) => void;
}

/**
 * Runs `workflow` once per (scope, Idempotency-Key) and sends its stored
 * answer; a replay says `Idempotent-Replayed: true`. The same key with
 * another body: 422. In flight: 409 + Retry-After (the lease's remaining
 * seconds). Lease lost: 409 + Retry-After 1. Outcome unknown, or the
 * workflow threw: 503 + Retry-After 1, the key stays started and the retry
 * resumes it. Failed after its attempts: 500 IDEMPOTENCY_WORKFLOW_FAILED.
 *
 * @example
 * app.post('/payments', workflowRoute(db, pay, { scope: (req) => req.get('x-user-id')!, input: (req) => req.body }));
 */
export function workflowRoute<I>(db: ShopDb, workflow: Workflow<I, IdempotentResponse>, options: WorkflowRouteOptions<I>): RequestHandler {
  const onError = options.onError ?? ((error: unknown) => console.error(`payment workflow: ${(error as Error).message}`));
  return async (req: Request, res: Response) => {
    const key = req.get('idempotency-key');
    if (!key) return send(res, 400, 'IDEMPOTENCY_KEY_INVALID', 'this request needs an Idempotency-Key header');
    try {
      const { value, replayed } = await runWorkflowOutcome(db, key, workflow, options.input(req), {
        scope: options.scope(req),
        // What makes two requests the same: the route and the body as parsed.
        fingerprint: { path: req.path, body: req.body as Record<string, string | number> },
      });
      const answer = value as IdempotentResponse;
      if (replayed) res.set('idempotent-replayed', 'true');
      res.status(answer.status ?? 200).type('application/json').set(answer.headers ?? {});
      return void res.send(JSON.stringify(answer.body));
    } catch (error) {
      if (!(error instanceof IdempotencyError) || error.status >= 500) onError(error);
      if (!(error instanceof IdempotencyError)) return send(res, 503, 'PAYMENT_INTERRUPTED', 'the payment did not finish; retry with the same Idempotency-Key', 1);
      const retryAfter = error instanceof IdempotencyInFlightError ? Math.max(1, error.retryAfterSeconds ?? 1) : error.retryable ? 1 : undefined;
      return send(res, error.status, error.code, error.message, retryAfter);
    }
  };
}

function send(res: Response, status: number, code: string, detail: string, retryAfter?: number): void {
  if (retryAfter !== undefined) res.set('retry-after', String(retryAfter));
  res.status(status).type(PROBLEM).send(JSON.stringify({ ...problem(status, code, detail), retryable: retryAfter !== undefined }));
}
