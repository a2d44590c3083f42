import type { Fingerprint } from '../../core/fingerprint.js';
import type { IdempotencyDatabase, TransactionOf } from '../../driver/database.js';
import { REPLAYED_HEADER } from '../../shared/header.js';
import { EXPIRES_HEADER, httpDate } from '../expiry.js';
import { fingerprintParts, type RouteOptions } from '../options.js';
import { PROBLEM_CONTENT_TYPE } from '../problem.js';
import { contentTypeOf, hasNoBody, isTextBody, payloadOf, type NormalizedResponse } from '../response.js';
import { idempotentRoute, NO_GUARD, type HttpAdapter, type RouteHandler } from '../route.js';
import { readWebBody, type IdempotentWebRequest } from './body.js';

/** A Web-standard handler that runs in the key's transaction and returns its response. */
export type IdempotentHandler<TTx> = RouteHandler<IdempotentWebRequest, TTx>;

/** Options of the Web `idempotent`: the core's (TTL, wait or reject, …) plus how to read a request. */
export type IdempotentRouteOptions = RouteOptions<IdempotentWebRequest>;

/** Where the Web adapter leaves the answer for the wrapper to return. */
export interface WebReply {
  response: Response | undefined;
}

/** Path and query of an absolute URL, as received (no decoding, no normalisation). */
function targetOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('//') + 2);
  return start === -1 ? '/' : url.slice(start);
}

/**
 * The default fingerprint: method, path, query string (as received, undecoded)
 * and the SHA-256 of the body's bytes as received, or null when the request has none.
 *
 * @example
 * idempotent(db, handler, { scope, fingerprint: (req) => ({ ...requestFingerprint(req), currency: req.request.headers.get('x-currency') }) })
 */
export function requestFingerprint(req: IdempotentWebRequest): { method: string; path: string; query: string | null; body: Fingerprint } {
  return fingerprintParts(req.request.method, targetOf(req.request.url), req.bytes);
}

/** How the Web-standard routes read a Request and build a Response. */
export const webAdapter: HttpAdapter<IdempotentWebRequest, WebReply> = {
  method: (req) => req.request.method,
  target: (req) => targetOf(req.request.url),
  fingerprint: requestFingerprint,
  // Headers joins repeated lines with commas: a bare key with a comma is refused as a list.
  keyLines: (req) => {
    const line = req.request.headers.get('idempotency-key');
    return line === null ? undefined : [line];
  },
  readBody: readWebBody,
  readsEveryBody: true,
  guard: () => NO_GUARD,
  answered: () => false,
  send(reply, response, replayed, expiresAt) {
    reply.response = webResponse(response, replayed, expiresAt);
  },
  sendProblem(reply, problem, retryAfter) {
    const headers = new Headers({ 'content-type': `${PROBLEM_CONTENT_TYPE}; charset=utf-8` });
    if (retryAfter !== undefined) headers.set('retry-after', String(retryAfter));
    reply.response = new Response(JSON.stringify(problem), { status: problem.status, headers });
  },
};

/** An answer as the Express adapter writes it: UTF-8 text or JSON, no body for 204, 205 and 304. */
function webResponse(response: NormalizedResponse, replayed: boolean, expiresAt: Date | undefined): Response {
  const { status, body } = response;
  const headers = new Headers();
  for (const [name, value] of Object.entries(response.headers)) {
    if (typeof value === 'string') headers.set(name, value);
    else for (const v of value) headers.append(name, v);
  }
  if (replayed) headers.set(REPLAYED_HEADER, 'true');
  if (expiresAt !== undefined) headers.set(EXPIRES_HEADER, httpDate(expiresAt));
  headers.delete('content-length');
  headers.delete('transfer-encoding');
  if (hasNoBody(status) || body === undefined || status === 205) {
    if (hasNoBody(status)) headers.delete('content-type');
    return new Response(null, { status, headers });
  }
  const type = response.headers['content-type'];
  headers.set('content-type', contentTypeOf(type));
  return new Response(payloadOf(body, isTextBody(body, type)), { status, headers });
}

/**
 * A Web-standard `(Request) => Promise<Response>` handler (Hono, Bun, Deno,
 * Cloudflare-style runtimes) that runs `handler` at most once per
 * `Idempotency-Key` within the required `scope`, as the Express `idempotent`
 * does. The body is read once: its bytes are fingerprinted as received, and
 * the handler gets it parsed as `req.body`. The answer is built only after
 * COMMIT. Errors that are not the library's are thrown to the caller.
 *
 * @example
 * const pay = idempotent(db, async (req, tx) => ({ status: 201, body: await charge(tx, req.body) }), { scope: 'shop' });
 * app.post('/payments', (c) => pay(c.req.raw)); // Hono
 */
export function idempotent<TDb extends IdempotencyDatabase>(
  db: TDb,
  handler: IdempotentHandler<TransactionOf<TDb>>,
  options: IdempotentRouteOptions,
): (request: Request) => Promise<Response> {
  const route = idempotentRoute(db, handler as IdempotentHandler<IdempotencyDatabase>, options, webAdapter);
  return async (request) => {
    const reply: WebReply = { response: undefined };
    await route.serve({ request, body: undefined, bytes: undefined }, reply);
    return reply.response!;
  };
}
