import { randomUUID } from 'node:crypto';
import { fullJitterDelay, retryAfterMs } from './backoff.js';
import { parseDuration, type Duration } from '../shared/duration.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { IDEMPOTENCY_KEY_HEADER, parseIdempotencyKey, REPLAYED_HEADER } from '../shared/header.js';
import { assertValidKey } from '../shared/key.js';

/** Defaults of `fetchWithRetry`, as in the design. */
export const RETRY_DEFAULTS = {
  retries: 4,
  baseDelay: 500,
  maxDelay: 8_000,
  timeout: 30_000,
  maxRetryAfter: 30_000,
} as const;

/** Why an attempt is retried. */
export type RetryReason = 'network' | 'timeout' | 'status';

/** What `onRetry` is told before each wait. */
export interface RetryEvent {
  /** Which retry is about to run: 1 for the first. */
  retry: number;
  /** How long `fetchWithRetry` now sleeps, in milliseconds. */
  delayMs: number;
  reason: RetryReason;
  /** The answer that is retried (reason `'status'`); its body is discarded after the hook. */
  response?: Response;
  /** The failure that is retried (reasons `'network'` and `'timeout'`). */
  error?: unknown;
  /** The key every attempt carries, if the request has one. */
  idempotencyKey: string | undefined;
}

/** Options of `fetchWithRetry`. */
export interface FetchWithRetryOptions {
  /** Retries after the first attempt. (Default: `4`) */
  retries?: number;
  /** Backoff base: retry n waits `random(0, min(maxDelay, baseDelay * 2^(n-1)))`. (Default: `500` ms) */
  baseDelay?: Duration;
  /** Backoff cap. (Default: `8000` ms) */
  maxDelay?: Duration;
  /** Bound on each attempt until the response headers arrive. (Default: `30000` ms) */
  timeout?: Duration;
  /** Longest wait a `Retry-After` can ask for; longer asks are cut to this. (Default: `30000` ms) */
  maxRetryAfter?: Duration;
  /** The key for POST and PATCH when the request has no `Idempotency-Key` header. (Default: `crypto.randomUUID()`) */
  idempotencyKey?: string;
  /** Called before each wait; awaited. */
  onRetry?: (event: RetryEvent) => void | Promise<void>;
  /** Uniform random number in [0, 1), for the jitter. (Default: `Math.random`) */
  random?: () => number;
  /** Waits `ms`, rejecting with `signal.reason` on abort. Inject one to test without waiting. (Default: a timer) */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** A `Response`, plus what the retries did. */
export type RetriedResponse = Response & {
  /** True when the server said this answer is a stored replay (`Idempotent-Replayed: true`). */
  readonly replayed: boolean;
  /** Attempts made, from 1. */
  readonly attempts: number;
  /** The key every attempt carried, if any: keep it to try again later. */
  readonly idempotencyKey: string | undefined;
};

/** Every attempt failed without an answer (network errors or timeouts). */
export class FetchRetryError extends Error {
  readonly code = 'FETCH_RETRIES_EXHAUSTED';

  constructor(
    readonly attempts: number,
    /** Send the request again later with this key, and the server replays or runs it once. */
    readonly idempotencyKey: string | undefined,
    cause: unknown,
  ) {
    super(`no answer after ${attempts} attempt${attempts === 1 ? '' : 's'}`, { cause });
    this.name = 'FetchRetryError';
  }
}

const KEYED_METHODS = new Set(['POST', 'PATCH']);
const IN_FLIGHT_CODES = new Set(['IDEMPOTENCY_IN_FLIGHT', 'IDEMPOTENCY_SERIALIZATION_FAILURE']);
const PROBLEM_TYPE = /^\s*application\/problem\+json\s*(?:;|$)/i;

/**
 * `fetch` with retries that cannot double a side effect: a POST or PATCH gets
 * one `Idempotency-Key` before the first attempt and sends it on every retry,
 * so the server runs it once and replays its answer after that.
 *
 * Retries network errors, attempt timeouts, 5xx, 429 and 409 "in flight"
 * (honouring `Retry-After`), with full-jitter backoff; never other 4xx, nor a
 * problem+json answer that says `"retryable": false`. The
 * final answer is returned as fetch would (a 503 after the last retry too);
 * `replayed` tells whether it is a stored replay. Bodies are sent again on
 * every attempt, so they must be re-readable: a string, bytes, Blob, FormData
 * or URLSearchParams, not a ReadableStream.
 *
 * @example
 * const res = await fetchWithRetry('https://api.example.com/payments', {
 *   method: 'POST',
 *   headers: { 'content-type': 'application/json' },
 *   body: JSON.stringify({ amount: 500 }),
 * });
 * if (res.ok) console.log(await res.json(), res.replayed ? '(replayed)' : '');
 */
export async function fetchWithRetry(input: string | URL | Request, init?: RequestInit, options: FetchWithRetryOptions = {}): Promise<RetriedResponse> {
  const o = resolveClientOptions(options);
  if (isStream(init?.body)) {
    throw new IdempotencyOptionsInvalidError(
      'fetchWithRetry cannot send a stream body again on a retry: pass a string, bytes, Blob, FormData or URLSearchParams',
    );
  }
  const signal = init?.signal ?? (input instanceof Request ? input.signal : undefined) ?? undefined;
  // One validated request, cloned per attempt: bad URLs and headers fail here,
  // once, so whatever fetch throws later is worth a retry.
  const template = new Request(input, init);
  const idempotencyKey = keyOf(template, o.idempotencyKey);
  if (idempotencyKey !== undefined && !template.headers.has(IDEMPOTENCY_KEY_HEADER)) {
    template.headers.set(IDEMPOTENCY_KEY_HEADER, idempotencyKey);
  }

  for (let attempt = 0; ; attempt++) {
    signal?.throwIfAborted();
    const outcome = await attemptOnce(template, o.timeout, signal);
    const last = attempt >= o.retries;
    let delayMs: number;
    if ('response' in outcome) {
      const { response } = outcome;
      if (last || !(await isRetryable(response))) return finish(response, attempt + 1, idempotencyKey);
      const asked = retryAfterMs(response.headers.get('retry-after'), response.headers.get('date'));
      delayMs = asked === undefined ? o.backoff(attempt) : Math.min(asked, o.maxRetryAfter);
      await o.onRetry?.({ retry: attempt + 1, delayMs, reason: 'status', response, idempotencyKey });
      // Free the connection: nobody reads a body we are about to retry past.
      await response.body?.cancel().catch(() => {});
    } else {
      if (last) throw new FetchRetryError(attempt + 1, idempotencyKey, outcome.error);
      delayMs = o.backoff(attempt);
      await o.onRetry?.({ retry: attempt + 1, delayMs, reason: outcome.reason, error: outcome.error, idempotencyKey });
    }
    signal?.throwIfAborted();
    await o.sleep(delayMs, signal);
  }
}

interface ClientOptions {
  retries: number;
  timeout: number;
  maxRetryAfter: number;
  idempotencyKey: string | undefined;
  backoff: (attempt: number) => number;
  onRetry: FetchWithRetryOptions['onRetry'];
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
}

function resolveClientOptions(options: FetchWithRetryOptions): ClientOptions {
  const retries = options.retries ?? RETRY_DEFAULTS.retries;
  if (!Number.isSafeInteger(retries) || retries < 0 || retries > 100) {
    throw new IdempotencyOptionsInvalidError('retries must be an integer from 0 to 100');
  }
  for (const name of ['onRetry', 'random', 'sleep'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function') {
      throw new IdempotencyOptionsInvalidError(`${name} must be a function`);
    }
  }
  if (options.idempotencyKey !== undefined) assertValidKey(options.idempotencyKey);
  const baseMs = parseDuration(options.baseDelay ?? RETRY_DEFAULTS.baseDelay, 'baseDelay');
  const capMs = parseDuration(options.maxDelay ?? RETRY_DEFAULTS.maxDelay, 'maxDelay');
  const random = options.random ?? Math.random;
  return {
    retries,
    timeout: parseDuration(options.timeout ?? RETRY_DEFAULTS.timeout, 'timeout'),
    maxRetryAfter: parseDuration(options.maxRetryAfter ?? RETRY_DEFAULTS.maxRetryAfter, 'maxRetryAfter'),
    idempotencyKey: options.idempotencyKey,
    backoff: (attempt) => fullJitterDelay(attempt, { baseMs, capMs, random }),
    onRetry: options.onRetry,
    sleep: options.sleep ?? sleep,
  };
}

/** The key of this request: its own header, else the option or a new UUID for POST and PATCH. */
function keyOf(request: Request, fromOptions: string | undefined): string | undefined {
  const header = request.headers.get(IDEMPOTENCY_KEY_HEADER);
  if (header !== null) {
    const key = parseIdempotencyKey(header);
    if (fromOptions !== undefined && fromOptions !== key) {
      throw new IdempotencyOptionsInvalidError('the request has an Idempotency-Key header and options.idempotencyKey differs from it');
    }
    return key;
  }
  if (fromOptions !== undefined) return fromOptions;
  return KEYED_METHODS.has(request.method.toUpperCase()) ? randomUUID() : undefined;
}

type Attempt = { response: Response } | { reason: 'network' | 'timeout'; error: unknown };

async function attemptOnce(template: Request, timeoutMs: number, callerSignal: AbortSignal | undefined): Promise<Attempt> {
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(new DOMException(`attempt timed out after ${timeoutMs} ms`, 'TimeoutError')),
    timeoutMs,
  );
  // The caller's signal stays attached after the headers arrive, so aborting
  // still stops reading the body; the deadline covers the wait for headers.
  const signal = callerSignal ? AbortSignal.any([callerSignal, deadline.signal]) : deadline.signal;
  try {
    return { response: await fetch(template.clone(), { signal }) };
  } catch (error) {
    if (callerSignal?.aborted) throw callerSignal.reason;
    if (deadline.signal.aborted) return { reason: 'timeout', error: deadline.signal.reason };
    return { reason: 'network', error };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * 5xx and 429 are worth another attempt; so is a 409 that says the key is in
 * flight. A problem (RFC 9457) whose `retryable` is false is final whatever
 * its status: the server says the same request would fail the same way (or,
 * worse, run its handler again for nothing).
 */
async function isRetryable(response: Response): Promise<boolean> {
  const { status } = response;
  if (status < 500 && status !== 429 && status !== 409) return false;
  const problem = await problemOf(response);
  if (problem?.retryable === false) return false;
  if (status !== 409) return true;
  // A 409 can also be a business conflict, which would repeat forever: only
  // ours (Retry-After, or an in-flight problem code) is retried.
  if (response.headers.has('retry-after')) return true;
  return typeof problem?.code === 'string' && IN_FLIGHT_CODES.has(problem.code);
}

/**
 * The members of a problem+json body (and the `code` of a JSON 409), read from
 * a clone; undefined for any other body, which is never read: a 5xx page may be
 * large, or slow to end.
 */
async function problemOf(response: Response): Promise<{ code?: unknown; retryable?: unknown } | undefined> {
  const type = response.headers.get('content-type') ?? '';
  const isProblem = PROBLEM_TYPE.test(type);
  if (!isProblem && !(response.status === 409 && /json/i.test(type))) return undefined;
  const body: unknown = await response.clone().json().catch(() => undefined);
  if (typeof body !== 'object' || body === null) return undefined;
  // `retryable` is ours only in a problem document; a plain JSON body is the application's.
  const { code, retryable } = body as { code?: unknown; retryable?: unknown };
  return isProblem ? { code, retryable } : { code };
}

function finish(response: Response, attempts: number, idempotencyKey: string | undefined): RetriedResponse {
  const replayed = response.headers.get(REPLAYED_HEADER)?.trim().toLowerCase() === 'true';
  return Object.defineProperties(response, {
    replayed: { value: replayed, enumerable: true },
    attempts: { value: attempts, enumerable: true },
    idempotencyKey: { value: idempotencyKey, enumerable: true },
  }) as RetriedResponse;
}

function isStream(body: unknown): boolean {
  if (typeof body !== 'object' || body === null) return false;
  return body instanceof ReadableStream || Symbol.asyncIterator in body;
}

/** Waits `ms`; rejects with the signal's reason when it aborts first. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
