// Declarations the README's Fastify example assumes: who the caller is. Here
// a bearer token is the customer's id; yours verifies a session or a JWT (in
// an onRequest hook, say). A request without one is answered 401.
import type { FastifyRequest } from 'fastify';

export function customerOf(req: FastifyRequest): string {
  const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
  if (!token) throw Object.assign(new Error('unauthenticated'), { statusCode: 401 });
  return token;
}
