// Declarations the README's REPEATABLE READ / SERIALIZABLE example assumes.
export { db, createOrder, type Cart } from './shop.js';
