export { fetchWithRetry, FetchRetryError, RETRY_DEFAULTS } from './client/fetch-with-retry.js';
export type { FetchWithRetryOptions, RetriedResponse, RetryEvent, RetryReason } from './client/fetch-with-retry.js';
export { fullJitterDelay, retryAfterMs } from './client/backoff.js';
export { IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER } from './shared/header.js';
export type { Duration } from './shared/duration.js';
