import type { FastifyReply, FastifyRequest, RawServerBase, RawServerDefault, RouteHandlerMethod } from 'fastify';
import type { Fingerprint } from '../../core/fingerprint.js';
import type { IdempotencyDatabase, TransactionOf } from '../../driver/database.js';
import { REPLAYED_HEADER } from '../../shared/header.js';
import { EXPIRES_HEADER, httpDate } from '../expiry.js';
import { fingerprintParts, type RouteOptions } from '../options.js';
import { PROBLEM_CONTENT_TYPE } from '../problem.js';
import { contentTypeOf, hasNoBody, isTextBody, payloadOf, type NormalizedResponse } from '../response.js';
import { idempotentRoute, NO_GUARD, type HttpAdapter, type RouteHandler } from '../route.js';

/** A Fastify route handler that runs in the key's transaction and returns its response. */
export type IdempotentHandler<TTx> = RouteHandler<FastifyRequest, TTx>;

/** Options of the Fastify `idempotent`: the core's (TTL, wait or reject, …) plus how to read a request. */
export type IdempotentRouteOptions = RouteOptions<FastifyRequest>;

/**
 * The default fingerprint: method, path, query string (as received, undecoded)
 * and the body as Fastify's content-type parser gave it (a JSON value, a
 * string, or the SHA-256 of a Buffer), or null when the request has none.
 *
 * @example
 * idempotent(db, handler, { scope, fingerprint: (req) => ({ ...requestFingerprint(req), currency: req.headers['x-currency'] ?? null }) })
 */
export function requestFingerprint(req: FastifyRequest): { method: string; path: string; query: string | null; body: Fingerprint } {
  return fingerprintParts(req.method, req.originalUrl, req.body);
}

/**
 * Every line of the key header. Node's HTTP/1.1 requests list them in
 * `headersDistinct`; those of `app.inject()` and of HTTP/2 have no such
 * member, only `rawHeaders` (name, value, name, value, …), which every kind has.
 */
function keyLinesOf(raw: FastifyRequest['raw']): readonly string[] | undefined {
  const distinct = (raw as { headersDistinct?: Record<string, string[] | undefined> }).headersDistinct;
  if (distinct !== undefined) return distinct['idempotency-key'];
  const lines: string[] = [];
  const { rawHeaders } = raw;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === 'idempotency-key') lines.push(rawHeaders[i + 1]!);
  return lines.length === 0 ? undefined : lines;
}

// Fastify has read and parsed the body (within its bodyLimit) before the handler runs.
const READ = Promise.resolve();

/** How the Fastify routes read a request and write a reply. */
export const fastifyAdapter: HttpAdapter<FastifyRequest, FastifyReply> = {
  method: (req) => req.method,
  target: (req) => req.originalUrl,
  fingerprint: requestFingerprint,
  keyLines: (req) => keyLinesOf(req.raw),
  readBody: () => READ,
  // The handler is given the request only: it has no reply to answer on.
  readsEveryBody: false,
  guard: () => NO_GUARD,
  answered: (reply) => reply.sent,
  send: sendReply,
  sendProblem(reply, problem, retryAfter, closeConnection) {
    if (closeConnection) reply.header('connection', 'close');
    if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
    reply.code(problem.status).type(`${PROBLEM_CONTENT_TYPE}; charset=utf-8`).send(JSON.stringify(problem));
  },
};

/** Writes an answer as the Express adapter does: UTF-8 text or JSON, our own framing, no serializer of Fastify's. */
function sendReply(reply: FastifyReply, response: NormalizedResponse, replayed: boolean, expiresAt: Date | undefined): void {
  const { status, body, headers } = response;
  reply.code(status);
  for (const name in headers) reply.header(name, headers[name]);
  if (replayed) reply.header(REPLAYED_HEADER, 'true');
  if (expiresAt !== undefined) reply.header(EXPIRES_HEADER, httpDate(expiresAt));
  if (hasNoBody(status) || body === undefined || status === 205) {
    if (hasNoBody(status)) reply.removeHeader('content-type');
    reply.removeHeader('content-length').removeHeader('transfer-encoding').send();
    return;
  }
  const type = headers['content-type'];
  reply.removeHeader('content-length').removeHeader('transfer-encoding');
  reply.header('content-type', contentTypeOf(type)).send(payloadOf(body, isTextBody(body, type)));
}

/**
 * A Fastify route handler that runs `handler` at most once per
 * `Idempotency-Key` within the required `scope`, as the Express `idempotent`
 * does: the handler's writes go through `tx`, which also claims the key and
 * stores the answer; the answer leaves only after COMMIT. Errors that are not
 * the library's go to Fastify's error handler.
 *
 * @example
 * app.post('/payments', idempotent(db, async (req, tx) => {
 *   const [charge] = await tx.insert(charges).values({ amount: (req.body as { amount: number }).amount }).returning();
 *   return { status: 201, body: charge };
 * }, { scope: (req) => req.headers['x-customer'] as string }));
 */
export function idempotent<TDb extends IdempotencyDatabase, TServer extends RawServerBase = RawServerDefault>(
  db: TDb,
  handler: IdempotentHandler<TransactionOf<TDb>>,
  options: IdempotentRouteOptions,
): RouteHandlerMethod<TServer> {
  const route = idempotentRoute(db, handler as IdempotentHandler<IdempotencyDatabase>, options, fastifyAdapter);
  // The same handler serves HTTP/1.1 and HTTP/2 (`Fastify({ http2: true })`): it reads the request through what both have.
  const serve: RouteHandlerMethod = async (req, reply) => {
    await route.serve(req, reply);
    return reply;
  };
  return serve as unknown as RouteHandlerMethod<TServer>;
}
