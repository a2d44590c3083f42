// Declarations the README's "Knowing whether it was a replay" example assumes.
export { db, createOrder, type Cart, type Order } from './shop.js';
