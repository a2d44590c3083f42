import type { IdempotencyDatabase } from '../driver/database.js';
import { listenForIdleErrors } from '../driver/pool-transaction.js';
import { runWorkflowOutcome } from '../leased/run.js';
import { assertDatabase } from '../leased/run-options.js';
import { isWorkflow, type Workflow } from '../leased/workflow.js';
import { IdempotencyError, IdempotencyKeyInvalidError, IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { keyFromHeaderLines } from '../shared/header.js';
import { problemOf } from './problem.js';
import { normalizeResponse, storedForm, type IdempotentResponse } from './response.js';
import { refusedRequest, sendCommitted, type HttpAdapter } from './route.js';
import { workflowProblem } from './workflow-answer.js';
import { requestInputProblem } from './workflow-input.js';
import { resolveWorkflowRouteOptions, type WorkflowRouteOptions } from './workflow-options.js';

/** A workflow route, served by a framework adapter. */
export interface WorkflowRoute<TReq, TRes> {
  serve(req: TReq, res: TRes): Promise<void>;
}

/**
 * The framework-neutral workflow route: the key, the body, the scope, the
 * fingerprint and the input, then the leased run (`runWorkflowOutcome`),
 * whose stored answer goes out once it has completed; a replay says so with
 * `Idempotent-Replayed: true`. What the run threw becomes a problem (see
 * `workflowProblem`) and goes to `onError` when it is a server-side failure.
 *
 * @example
 * const route = idempotentWorkflowRoute(db, payOrder, { scope: 'shop', input: (req) => req.body }, expressAdapter);
 * app.post('/orders', (req, res, next) => route.serve(req, res).catch(next));
 */
export function idempotentWorkflowRoute<TReq, TRes, I, O extends IdempotentResponse>(
  db: IdempotencyDatabase,
  workflow: Workflow<I, O>,
  options: WorkflowRouteOptions<TReq, I>,
  adapter: HttpAdapter<TReq, TRes>,
): WorkflowRoute<TReq, TRes> {
  // Checked while the app is built, not on every request: a database (never a transaction), a workflow, options.
  assertDatabase(db, 'idempotentWorkflow()');
  if (!isWorkflow(workflow)) throw new IdempotencyOptionsInvalidError('idempotentWorkflow() needs a workflow made by defineWorkflow()');
  const o = resolveWorkflowRouteOptions(options, adapter);
  listenForIdleErrors(db);
  const report = (error: unknown, req: TReq) => {
    try {
      o.onError(error, req);
    } catch {
      // A reporter that fails must not change the answer: the client still gets its problem.
    }
  };
  const AFTER_SEND_FAILED = 'its answer is stored: a retry with the same key replays it';

  return {
    async serve(req, res) {
      let key: string;
      let scope: string;
      let input: I;
      let fingerprint;
      try {
        const found = keyFromHeaderLines(adapter.keyLines(req));
        if (found === undefined) throw new IdempotencyKeyInvalidError('this request needs an Idempotency-Key header');
        key = found;
        await adapter.readBody(req, o.maxBodyBytes);
        scope = await o.scope(req);
        // The application's too, as scope and input: outside the run, whose errors would tell the client to retry.
        fingerprint = o.fingerprint(req);
        // A throw here is the application's (a body without what `input` reads): nothing is claimed, it goes to the framework.
        input = await o.input(req);
      } catch (error) {
        const refused = refusedRequest(error);
        return adapter.sendProblem(res, refused.problem, refused.problem.retryable ? o.retryAfter : undefined, refused.closeConnection);
      }
      let outcome;
      try {
        outcome = await runWorkflowOutcome(db, key, workflow, input, { ...o.core, scope, fingerprint });
      } catch (error) {
        // Refused before anything was claimed: when the client sent what cannot be stored, it is told so (4xx), and nobody is paged.
        const client = error instanceof IdempotencyOptionsInvalidError ? requestInputProblem(input, workflow.maxResultBytes) : undefined;
        if (client !== undefined) return adapter.sendProblem(res, client, undefined, false);
        const answer = workflowProblem(error, o.retryAfter);
        if (answer.report) report(error, req);
        return adapter.sendProblem(res, answer.problem, answer.retryAfter, false);
      }
      let response;
      try {
        response = normalizeResponse(outcome.value as IdempotentResponse);
      } catch (error) {
        // Completed and stored, but not an answer: the workflow returned something other than { status, body, headers }.
        if (!(error instanceof IdempotencyError)) throw error;
        report(error, req);
        return adapter.sendProblem(res, problemOf(error), undefined, false);
      }
      // The whole answer went into the key row; a replay sends only the headers meant to be replayed.
      sendCommitted(adapter, res, outcome.replayed ? storedForm(response, o.storedHeaders) : response, outcome.replayed, undefined, AFTER_SEND_FAILED);
    },
  };
}
