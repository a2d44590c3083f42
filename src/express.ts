export { idempotent } from './http/express.js';
export type { IdempotentHandler } from './http/express.js';
export { IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER, parseIdempotencyKey } from './shared/header.js';
export { DEFAULT_METHODS, DEFAULT_STORED_HEADERS, isFinalByDefault, requestFingerprint } from './http/options.js';
export type { IdempotentRouteOptions } from './http/options.js';
export type { HeaderValue, IdempotentResponse } from './http/response.js';
export { PROBLEM_CONTENT_TYPE, problemOf } from './http/problem.js';
export type { ProblemCode, ProblemDetails } from './http/problem.js';
