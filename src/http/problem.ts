import { STATUS_CODES } from 'node:http';
import type { IdempotencyError, IdempotencyErrorCode } from '../shared/errors.js';

/** Media type of RFC 9457 problem details. */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/**
 * Codes an HTTP answer of this library can carry: the core's, plus a commit
 * that failed after the handler ran, and a request body that could not be
 * read to fingerprint it (over `maxBodyBytes`: 413; cut off: 400; content-encoded or in an unknown charset, Web only: 415; consumed by
 * other middleware without a parsed value: 500), or a workflow's input from it that cannot be stored (text jsonb
 * refuses: 400; over `maxResultBytes`: 413).
 */
export type ProblemCode = IdempotencyErrorCode | 'IDEMPOTENCY_COMMIT_FAILED' | 'IDEMPOTENCY_BODY_TOO_LARGE' | 'IDEMPOTENCY_BODY_UNREADABLE';

/**
 * An RFC 9457 problem details body with our stable `code` as an extension
 * member. `type` is `about:blank`, so `title` is the status phrase and `code`
 * is what a client branches on.
 */
export interface ProblemDetails {
  type: 'about:blank';
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  /** True when sending the same request again (same key) can succeed. */
  retryable: boolean;
}

/**
 * Problem details for one of the library's typed errors.
 *
 * @example
 * res.status(e.status).type(PROBLEM_CONTENT_TYPE).json(problemOf(e))
 */
export function problemOf(error: IdempotencyError): ProblemDetails {
  // Server-side faults (options, results that cannot be stored) describe our
  // configuration, not the request: the client gets the code, not the details.
  const detail = error.status >= 500 ? 'the server could not process this request' : error.message;
  return problem(error.status, error.code, detail, error.retryable);
}

/** Problem details from their parts. */
export function problem(status: number, code: ProblemCode, detail: string, retryable: boolean): ProblemDetails {
  return { type: 'about:blank', title: STATUS_CODES[status] ?? 'Error', status, detail, code, retryable };
}

/** The answer when the handler finished but its transaction did not commit. */
export function commitFailedProblem(): ProblemDetails {
  return problem(503, 'IDEMPOTENCY_COMMIT_FAILED', 'the transaction did not commit; nothing was stored, retry with the same key', true);
}
