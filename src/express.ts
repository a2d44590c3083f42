export { idempotent, requestFingerprint } from './http/express/route.js';
export type { IdempotentHandler, IdempotentRouteOptions } from './http/express/route.js';
export { IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER, parseIdempotencyKey } from './shared/header.js';
export { EXPIRES_HEADER } from './http/expiry.js';
export { DEFAULT_METHODS, DEFAULT_STORED_HEADERS, isFinalByDefault } from './http/options.js';
export type { HeaderValue, IdempotentResponse } from './http/response.js';
export { PROBLEM_CONTENT_TYPE, problemOf } from './http/problem.js';
export type { ProblemCode, ProblemDetails } from './http/problem.js';
