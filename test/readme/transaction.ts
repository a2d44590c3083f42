// Declarations the README's "Given a transaction" example assumes: the
// database, the tables and `createOrder` of ./shop.ts, and the request's values.
export { db, auditLog, carts, createOrder } from './shop.js';
import type { Cart } from './shop.js';

/** From the request: its Idempotency-Key header, the authenticated user, the body. */
export const key = 'checkout-0001';
export const userId = 'alice';
export const cart: Cart = { items: [{ sku: 'mug', quantity: 1 }] };
