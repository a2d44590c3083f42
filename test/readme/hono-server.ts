// Declarations the README's Hono example assumes: who the caller is. Here a
// bearer token is the customer's id; yours verifies a session or a JWT. A
// request without one is answered 401 (Hono's HTTPException).
import { HTTPException } from 'hono/http-exception';

export function customerOf(request: Request): string {
  const token = /^Bearer (\S+)$/.exec(request.headers.get('authorization') ?? '')?.[1];
  if (!token) throw new HTTPException(401, { message: 'unauthenticated' });
  return token;
}
