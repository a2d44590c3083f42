import type { FastifyRequest, RawServerBase, RawServerDefault, RouteHandlerMethod } from 'fastify';
import type { IdempotencyDatabase } from '../../driver/database.js';
import type { Workflow } from '../../leased/workflow.js';
import type { IdempotentResponse } from '../response.js';
import type { WorkflowRouteOptions } from '../workflow-options.js';
import { idempotentWorkflowRoute } from '../workflow-route.js';
import { fastifyAdapter } from './route.js';

/** Options of the Fastify `idempotentWorkflow`: the scope, the input and how the leased run behaves. */
export type IdempotentWorkflowOptions<I> = WorkflowRouteOptions<FastifyRequest, I>;

/**
 * A Fastify route handler that runs `workflow` at most once per
 * `Idempotency-Key` within the required `scope`, as the Express
 * `idempotentWorkflow` does. Errors of `input` go to Fastify's error handler.
 *
 * @example
 * app.post('/orders/:id/pay', idempotentWorkflow(db, payOrder, {
 *   scope: (req) => req.headers['x-customer'] as string,
 *   input: (req) => req.body as { amount: number },
 * }));
 */
export function idempotentWorkflow<I, O extends IdempotentResponse, TServer extends RawServerBase = RawServerDefault>(
  db: IdempotencyDatabase,
  workflow: Workflow<I, O>,
  options: IdempotentWorkflowOptions<I>,
): RouteHandlerMethod<TServer> {
  const route = idempotentWorkflowRoute(db, workflow, options, fastifyAdapter);
  const serve: RouteHandlerMethod = async (req, reply) => {
    await route.serve(req, reply);
    return reply;
  };
  return serve as unknown as RouteHandlerMethod<TServer>;
}
