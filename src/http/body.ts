import { problem, type ProblemDetails } from './problem.js';

/** Default bound on a body the route reads itself (when no parser did): 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** A request the route answers with a problem before anything is claimed. */
export class RequestProblem extends Error {
  constructor(
    readonly problem: ProblemDetails,
    /** Close the connection after answering: the rest of the body is still on the wire. */
    readonly closeConnection = false,
  ) {
    super(problem.detail);
  }
}

/** A body over the route's bound: 413, and the connection closes (the rest is unread). */
export function tooLarge(maxBytes: number): RequestProblem {
  return new RequestProblem(problem(413, 'IDEMPOTENCY_BODY_TOO_LARGE', `the request body is over ${maxBytes} bytes`, false), true);
}

/** A body the client cut off: 400, and nobody is left to read the rest. */
export function cutOff(): RequestProblem {
  return new RequestProblem(problem(400, 'IDEMPOTENCY_BODY_UNREADABLE', 'the request body ended before it was complete', false), true);
}
