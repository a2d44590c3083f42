import { isExactText } from '../shared/key.js';
import { problem, type ProblemDetails } from './problem.js';

/**
 * Why a workflow's input, taken from the request, cannot be stored, when the
 * request is to blame: text jsonb refuses (a NUL, a lone surrogate: valid
 * JSON a client can send) answers 400, more JSON than the workflow's `maxResultBytes` 413.
 * Undefined otherwise (a BigInt, a Map: the application built the input
 * wrong, which stays the server's 500). Called only after the run refused
 * the input, so a request that can be stored pays nothing for it.
 *
 * @example
 * requestInputProblem({ note: '\ud800' }, undefined) // 400 IDEMPOTENCY_BODY_UNREADABLE
 */
export function requestInputProblem(input: unknown, maxResultBytes: number): ProblemDetails | undefined {
  let inexact = false;
  let json: string;
  try {
    json = JSON.stringify({ value: input }, (key, value: unknown) => {
      if (!isExactText(key) || (typeof value === 'string' && !isExactText(value))) inexact = true;
      return value;
    });
  } catch {
    // Something JSON cannot write (a BigInt, a cycle): the application's input, not the client's.
    return undefined;
  }
  if (inexact) {
    return problem(400, 'IDEMPOTENCY_BODY_UNREADABLE', 'the request holds text that cannot be stored (a NUL character or a lone UTF-16 surrogate)', false);
  }
  if (Buffer.byteLength(json, 'utf8') > maxResultBytes) {
    return problem(413, 'IDEMPOTENCY_BODY_TOO_LARGE', `the work this request asks for is over ${maxResultBytes} bytes of JSON, more than can be stored with its key`, false);
  }
  return undefined;
}
