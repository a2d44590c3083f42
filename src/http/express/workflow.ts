import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { IdempotencyDatabase } from '../../driver/database.js';
import type { Workflow } from '../../leased/workflow.js';
import type { IdempotentResponse } from '../response.js';
import type { WorkflowRouteOptions } from '../workflow-options.js';
import { idempotentWorkflowRoute } from '../workflow-route.js';
import { expressAdapter } from './route.js';

/** Options of the Express `idempotentWorkflow`: the scope, the input and how the leased run behaves. */
export type IdempotentWorkflowOptions<I> = WorkflowRouteOptions<Request, I>;

/**
 * An Express route handler that runs `workflow` (see `defineWorkflow`) at most
 * once per `Idempotency-Key` within the required `scope`, on the input
 * `options.input` takes from the request. The key row is claimed with a lease
 * and committed at once; each step commits on its own and is never repeated.
 * The workflow's answer ({ status, body, headers }) is stored and sent when the
 * run completes; a replay answers the same with `Idempotent-Replayed: true`.
 * A duplicate while the lease holds gets 409 with `Retry-After` (the lease's
 * remaining seconds); a workflow that threw or whose call's outcome is unknown
 * gets 503 with `Retry-After`: the key stays started and the retry (or the
 * completer) resumes it; a key recorded as failed gets 500
 * `IDEMPOTENCY_WORKFLOW_FAILED`. Errors of `input` go to `next`.
 *
 * @example
 * app.post('/orders/:id/pay', idempotentWorkflow(db, payOrder, {
 *   scope: (req) => req.user.id,
 *   input: (req) => ({ orderId: req.params.id, amount: req.body.amount }),
 * }));
 */
export function idempotentWorkflow<I, O extends IdempotentResponse>(
  db: IdempotencyDatabase,
  workflow: Workflow<I, O>,
  options: IdempotentWorkflowOptions<I>,
): RequestHandler {
  const route = idempotentWorkflowRoute(db, workflow, options, expressAdapter);
  return (req: Request, res: Response, next: NextFunction) => route.serve(req, res).catch(next);
}
