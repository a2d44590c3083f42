import type { IdempotencyDatabase } from '../../driver/database.js';
import type { Workflow } from '../../leased/workflow.js';
import type { IdempotentResponse } from '../response.js';
import type { WorkflowRouteOptions } from '../workflow-options.js';
import { idempotentWorkflowRoute } from '../workflow-route.js';
import type { IdempotentWebRequest } from './body.js';
import { webAdapter, type WebReply } from './route.js';

/** Options of the Web `idempotentWorkflow`: the scope, the input and how the leased run behaves. */
export type IdempotentWorkflowOptions<I> = WorkflowRouteOptions<IdempotentWebRequest, I>;

/**
 * A Web-standard `(Request) => Promise<Response>` handler that runs `workflow`
 * at most once per `Idempotency-Key` within the required `scope`, as the
 * Express `idempotentWorkflow` does. The body is read once and given to
 * `input` parsed, as `req.body`. Errors of `input` are thrown to the caller.
 *
 * @example
 * const pay = idempotentWorkflow(db, payOrder, { scope: 'shop', input: (req) => req.body as { amount: number } });
 * app.post('/payments', (c) => pay(c.req.raw)); // Hono
 */
export function idempotentWorkflow<I, O extends IdempotentResponse>(
  db: IdempotencyDatabase,
  workflow: Workflow<I, O>,
  options: IdempotentWorkflowOptions<I>,
): (request: Request) => Promise<Response> {
  const route = idempotentWorkflowRoute(db, workflow, options, webAdapter);
  return async (request) => {
    const reply: WebReply = { response: undefined };
    await route.serve({ request, body: undefined, bytes: undefined }, reply);
    return reply.response!;
  };
}
