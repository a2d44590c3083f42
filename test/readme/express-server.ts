// Declarations the README's Express example assumes: your authentication
// middleware. Here a bearer token is the customer's id; yours verifies a
// session or a JWT. It sets req.customerId, or answers 401 itself.
import type { RequestHandler } from 'express';

export const authenticate: RequestHandler = (req, res, next) => {
  const token = /^Bearer (\S+)$/.exec(req.get('authorization') ?? '')?.[1];
  if (!token) {
    res.status(401).json({ error: 'unauthenticated' });
    return;
  }
  Object.assign(req, { customerId: token });
  next();
};
