import { isConnectionLost } from '../driver/connection-loss.js';
import {
  IdempotencyConnectionLostError,
  IdempotencyError,
  IdempotencyInFlightError,
  IdempotencyLeaseLostError,
  IdempotencyOutcomeUnknownError,
  IdempotencyWorkflowFailedError,
} from '../shared/errors.js';
import { problem, problemOf, type ProblemDetails } from './problem.js';

/** What a workflow route answers when the run did not give a response, and what to report. */
export interface WorkflowProblem {
  problem: ProblemDetails;
  /** Seconds of `Retry-After`, when the same request can succeed later. */
  retryAfter: number | undefined;
  /** A server-side failure the application should hear of (its `onError`); the client only gets the problem. */
  report: boolean;
}

const RESUMES = 'retry with the same key: the work resumes where it stopped, and never repeats a step that completed';

/**
 * Maps what a leased run threw to its HTTP answer (the spec's table): in
 * flight 409 with the lease's remaining time; lease lost 409; outcome unknown
 * or the workflow threw 503 (the key stays started, a retry resumes it);
 * failed key 500 `IDEMPOTENCY_WORKFLOW_FAILED`; the library's other errors as
 * everywhere (422 for a reused key).
 *
 * @example
 * const { problem, retryAfter } = workflowProblem(error, 1);
 */
export function workflowProblem(error: unknown, retryAfter: number): WorkflowProblem {
  if (error instanceof IdempotencyInFlightError) {
    // The holder's lease ends then, by the database clock: a retry sooner would only be refused again.
    return { problem: problemOf(error), retryAfter: error.retryAfterSeconds ?? retryAfter, report: false };
  }
  if (error instanceof IdempotencyWorkflowFailedError) {
    // Not the error's message: it names the workflow and its last step, which are the server's business.
    const detail = 'the work for this key failed after repeated attempts and is recorded as failed: it will not run again';
    return { problem: problem(500, error.code, detail, false), retryAfter: undefined, report: true };
  }
  if (error instanceof IdempotencyLeaseLostError) {
    // Not the error's message: it names the workflow, which is the server's business (as for a failed key).
    const detail = 'another request or the completer took this key over while this one ran; retry with the same key to get its answer';
    return { problem: problem(error.status, error.code, detail, true), retryAfter, report: false };
  }
  if (error instanceof IdempotencyOutcomeUnknownError) {
    const detail = `whether a call to another service took effect is not known yet; ${RESUMES}`;
    return { problem: problem(503, error.code, detail, true), retryAfter, report: true };
  }
  if (error instanceof IdempotencyError) {
    const found = problemOf(error);
    return { problem: found, retryAfter: found.retryable ? retryAfter : undefined, report: found.status >= 500 };
  }
  if (isConnectionLost(error)) {
    const lost = problemOf(new IdempotencyConnectionLostError(`the database connection was lost; ${RESUMES}`));
    return { problem: lost, retryAfter, report: true };
  }
  // The workflow threw: its lease was released and the key stays started, so
  // for the client the outcome is not known yet; a retry (or the completer) resumes it.
  const detail = `the work stopped before it completed; ${RESUMES}`;
  return { problem: problem(503, 'IDEMPOTENCY_OUTCOME_UNKNOWN', detail, true), retryAfter, report: true };
}
