import type { ShopDb } from './db.js';
import { reserveAll } from './inventory.js';
import { orderItems, orders } from './schema.js';

export interface OrderInput {
  items: { sku: string; quantity: number }[];
}

export interface Order {
  id: string;
  items: { sku: string; quantity: number }[];
  createdAt: string;
}

/** Reserves every item and records the order, in the caller's transaction: all or nothing. */
export async function createOrder(tx: ShopDb, userId: string, input: OrderInput, requestKey: string | null): Promise<Order> {
  await reserveAll(tx, input.items);
  const [order] = await tx.insert(orders).values({ userId, requestKey }).returning();
  await tx.insert(orderItems).values(input.items.map((item) => ({ orderId: order!.id, ...item })));
  return { id: order!.id, items: input.items, createdAt: order!.createdAt.toISOString() };
}
