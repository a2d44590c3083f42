import { createHash } from 'node:crypto';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { assertValidScope } from '../shared/key.js';
import type { Fingerprint } from '../core/fingerprint.js';
import { resolveOptions, type IdempotencyOptions } from '../core/options.js';
import { DEFAULT_MAX_BODY_BYTES } from './body.js';

/**
 * Options of an idempotent route in any framework: the core's (TTL, wait or
 * reject, …) plus how to read a request of type `TReq`.
 */
export interface RouteOptions<TReq>
  extends Pick<IdempotencyOptions, 'ttl' | 'onInFlight' | 'waitTimeout' | 'maxResultBytes' | 'schema' | 'transaction' | 'serializationRetries' | 'prepare'> {
  /** Answer 400 when a request of an idempotent method has no key; when false, such a
   * request runs once, without a key. (Default: `true`) */
  required?: boolean;
  /** Methods that use the key; any other method passes straight through to the handler.
   * (Default: `['POST', 'PATCH']`) */
  methods?: readonly string[];
  /** Whose keys these are (required): a function of the request that returns the
   * authenticated user, tenant or API client, or a fixed string for a single-tenant
   * service. Keys never replay across scopes. A function that returns anything but a
   * non-empty string (say `undefined`, because the authentication middleware is not
   * mounted) fails the request with `IDEMPOTENCY_OPTIONS_INVALID`: nothing is claimed
   * and the handler does not run. */
  scope: string | ((req: TReq) => string | Promise<string>);
  /** What makes two requests "the same": a reused key with another fingerprint gets 422.
   * The method and path are always part of it, so a key never replays another route's
   * answer; this option says what else: a function of the request, or `false` for nothing
   * else. (Default: `requestFingerprint`: the query string and the body as received) */
  fingerprint?: ((req: TReq) => Fingerprint) | false;
  /** Largest request body the route reads itself, when no body parser read it, to
   * fingerprint it; a longer one gets 413 `IDEMPOTENCY_BODY_TOO_LARGE`. (Default: 1 MiB) */
  maxBodyBytes?: number;
  /** Response headers stored and replayed; `set-cookie`, credentials and hop-by-hop
   * headers are refused. (Default: `['content-type', 'location']`) */
  storedHeaders?: readonly string[];
  /** Whether a status is a final answer: stored and replayed. Any other status rolls the
   * transaction back and is not stored. (Default: `isFinalByDefault`: 2xx, 3xx and 4xx
   * except 408, 425 and 429; 5xx never) */
  isFinal?: (status: number) => boolean;
  /** `Retry-After` seconds on 409 in flight and other retryable answers: a whole number, at least 1. (Default: `1`) */
  retryAfter?: number;
  /** Send `Idempotency-Key-Expires` (an HTTP-date: when the key expires, by the database
   * clock) on first answers and on replays, so a client knows until when a retry replays.
   * (Default: `false`) */
  expiryHeader?: boolean;
}

/** Options checked once, when the route is built. */
export interface ResolvedRouteOptions<TReq> {
  required: boolean;
  methods: ReadonlySet<string>;
  /** The request's scope, checked: a non-empty, well-formed string. */
  scope: (req: TReq) => Promise<string>;
  fingerprint: (req: TReq) => Fingerprint;
  maxBodyBytes: number;
  storedHeaders: ReadonlySet<string>;
  isFinal: (status: number) => boolean;
  retryAfter: number;
  core: Pick<IdempotencyOptions, 'ttl' | 'onInFlight' | 'waitTimeout' | 'maxResultBytes' | 'schema' | 'transaction' | 'serializationRetries' | 'prepare' | 'withExpiry'>;
}

export const DEFAULT_METHODS = ['POST', 'PATCH'] as const;
export const DEFAULT_STORED_HEADERS = ['content-type', 'location'] as const;

// Replaying these would hand one client's session or credentials to whoever
// holds the key, or corrupt the framing of the replayed message.
const NEVER_STORED = new Set([
  'set-cookie',
  'set-cookie2',
  'cookie',
  'authorization',
  'proxy-authorization',
  'proxy-authenticate',
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'content-length',
  'idempotent-replayed',
  'idempotency-key-expires',
]);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

// 408 Request Timeout, 425 Too Early and 429 Too Many Requests say "not now",
// not "no": stored, they would answer every retry of the request, the client's
// own backoff included, for the key's whole lifetime.
const NOT_NOW = new Set([408, 425, 429]);

/**
 * The default `isFinal`: 2xx, 3xx and 4xx are answers to store and replay,
 * except 408, 425 and 429, which ask the client to try again; 5xx never.
 *
 * @example
 * idempotent(db, handler, { scope, isFinal: (status) => isFinalByDefault(status) && status !== 404 })
 */
export function isFinalByDefault(status: number): boolean {
  return status < 500 && !NOT_NOW.has(status);
}

/** How a framework's request shows what every fingerprint needs. */
export interface RequestView<TReq> {
  method(req: TReq): string;
  /** The request target as received: path and query string, undecoded. */
  target(req: TReq): string;
  /** The default fingerprint (the adapter's `requestFingerprint`). */
  fingerprint(req: TReq): Fingerprint;
}

/** The parts of the default fingerprint, from what every framework has. */
export function fingerprintParts(method: string, target: string, body: unknown): { method: string; path: string; query: string | null; body: Fingerprint } {
  const { path, query } = splitUrl(target);
  return { method: method.toUpperCase(), path, query, body: bodyFingerprint(body) };
}

/** `/a/b?x=1` as `{ path: '/a/b', query: 'x=1' }`; no `?` is no query (null), not an empty one. */
function splitUrl(url: string): { path: string; query: string | null } {
  const at = url.indexOf('?');
  return at === -1 ? { path: url, query: null } : { path: url.slice(0, at), query: url.slice(at + 1) };
}

// Tagged, so that no parsed value can pass for raw bytes or for "no body".
function bodyFingerprint(body: unknown): Fingerprint {
  if (body === undefined) return null;
  if (body instanceof Uint8Array) return { bytes: `sha256:${createHash('sha256').update(body).digest('base64url')}` };
  return { parsed: body as Fingerprint };
}

const SCOPE_FIX =
  "pass a function of the request that returns the authenticated principal, e.g. { scope: (req) => req.user.id }, " +
  "or, for a single-tenant service, a fixed string, e.g. { scope: 'my-service' }";

/**
 * Checks route options, or throws `IDEMPOTENCY_OPTIONS_INVALID` while the app
 * is being built rather than on the first request.
 *
 * @example
 * resolveRouteOptions({ scope: 'billing-service', onInFlight: 'reject' }, adapter) // adapter: the framework's RequestView
 */
export function resolveRouteOptions<TReq>(options: RouteOptions<TReq>, view: RequestView<TReq>): ResolvedRouteOptions<TReq> {
  if (typeof options !== 'object' || options === null) throw invalid(`idempotent() needs options with a scope: ${SCOPE_FIX}`);
  const { required, methods, scope, fingerprint, maxBodyBytes, storedHeaders, isFinal, retryAfter, expiryHeader, ...core } = options;
  // The core's own checks (ttl, wait bound, policy, sizes, schema), with a stand-in key.
  resolveOptions('option-check', core);
  if (required !== undefined && typeof required !== 'boolean') throw invalid('required must be a boolean');
  if (fingerprint !== undefined && fingerprint !== false && typeof fingerprint !== 'function') {
    throw invalid('fingerprint must be a function of the request, or false');
  }
  if (isFinal !== undefined && typeof isFinal !== 'function') throw invalid('isFinal must be a function of the status');
  if (expiryHeader !== undefined && typeof expiryHeader !== 'boolean') throw invalid('expiryHeader must be a boolean');
  const maxBody = maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isSafeInteger(maxBody) || maxBody < 0) throw invalid('maxBodyBytes must be a whole number of bytes');
  const seconds = retryAfter ?? 1;
  // Retry-After: 0 would tell every client to retry at once, hot: a second is the least a header may say.
  if (!Number.isSafeInteger(seconds) || seconds < 1) throw invalid('retryAfter must be a whole number of seconds, at least 1');
  return {
    required: required ?? true,
    methods: new Set(tokens(methods ?? DEFAULT_METHODS, 'methods').map((m) => m.toUpperCase())),
    scope: scopeOf<TReq>(scope),
    fingerprint: routeFingerprint(view, fingerprint === false ? undefined : (fingerprint ?? view.fingerprint)),
    maxBodyBytes: maxBody,
    storedHeaders: new Set(storedHeaderNames(storedHeaders ?? DEFAULT_STORED_HEADERS)),
    isFinal: isFinal ?? isFinalByDefault,
    retryAfter: seconds,
    // The outcome carries the expiry only for the header: no Date per request otherwise.
    core: expiryHeader === true ? { ...core, withExpiry: true } : core,
  };
}

/**
 * The route (method and path) with what the option adds. The route is always
 * there: with a fingerprint that leaves it out (or none), the same key sent to
 * another route would replay that route's answer.
 */
function routeFingerprint<TReq>(view: RequestView<TReq>, more: ((req: TReq) => Fingerprint) | undefined): (req: TReq) => Fingerprint {
  return (req) => {
    const { path } = splitUrl(view.target(req));
    const route = [view.method(req).toUpperCase(), path];
    return more === undefined ? { route } : { route, request: more(req) };
  };
}

/**
 * The scope as a checked function. There is no default: one scope shared by
 * every caller would replay one customer's answer (amount, card, location) to
 * another who sent the same key, so each route says whose keys these are.
 */
function scopeOf<TReq>(scope: unknown): (req: TReq) => Promise<string> {
  if (typeof scope === 'string') {
    checkScope(scope, 'the fixed scope is');
    return () => Promise.resolve(scope);
  }
  if (typeof scope !== 'function') {
    throw invalid(scope === undefined ? `idempotent() needs a scope: ${SCOPE_FIX}` : `scope must be a string or a function: ${SCOPE_FIX}`);
  }
  return async (req) => {
    const value: unknown = await (scope as (req: TReq) => unknown)(req);
    checkScope(value, 'the scope function returned');
    return value;
  };
}

// An empty or missing scope is where a missing authentication middleware shows:
// it must fail, not fall back to a scope every caller shares.
function checkScope(value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string' || value.length === 0) {
    throw invalid(`${what} ${value === '' ? 'an empty string' : typeof value}; a scope is a non-empty string (is the authentication middleware mounted before this route?)`);
  }
  assertValidScope(value);
}

function storedHeaderNames(names: readonly string[]): string[] {
  return tokens(names, 'storedHeaders').map((name) => {
    const lower = name.toLowerCase();
    if (NEVER_STORED.has(lower)) throw invalid(`storedHeaders must not include ${lower}: replaying it would leak or break responses`);
    return lower;
  });
}

function tokens(values: readonly string[], option: string): string[] {
  if (!Array.isArray(values) || !values.every((v) => typeof v === 'string' && TOKEN.test(v))) {
    throw invalid(`${option} must be an array of HTTP tokens`);
  }
  return [...values];
}

function invalid(message: string): IdempotencyOptionsInvalidError {
  return new IdempotencyOptionsInvalidError(message);
}
