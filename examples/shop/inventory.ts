import { eq, inArray, sql } from 'drizzle-orm';
import { ShopRefusal, type ShopDb } from './db.js';
import { inventory } from './schema.js';

export interface StockLevel {
  sku: string;
  stock: number;
}

export async function setStock(db: ShopDb, sku: string, stock: number): Promise<StockLevel> {
  const [row] = await db
    .insert(inventory)
    .values({ sku, stock })
    .onConflictDoUpdate({ target: inventory.sku, set: { stock } })
    .returning();
  return row!;
}

export async function getStock(db: ShopDb, sku: string): Promise<StockLevel | undefined> {
  const [row] = await db.select().from(inventory).where(eq(inventory.sku, sku));
  return row;
}

/**
 * Takes `quantity` of every SKU or none: rows are locked in SKU order (so two
 * orders never deadlock), checked, then decremented. Refuses with
 * OUT_OF_STOCK (409) or UNKNOWN_SKU (404), a business decision that is stored.
 */
export async function reserveAll(tx: ShopDb, items: { sku: string; quantity: number }[]): Promise<StockLevel[]> {
  const wanted = new Map<string, number>();
  for (const item of items) wanted.set(item.sku, (wanted.get(item.sku) ?? 0) + item.quantity);
  const skus = [...wanted.keys()].sort();
  const rows = await tx.select().from(inventory).where(inArray(inventory.sku, skus)).orderBy(inventory.sku).for('update');
  for (const sku of skus) {
    const row = rows.find((r) => r.sku === sku);
    if (!row) throw new ShopRefusal(404, 'UNKNOWN_SKU', `no such SKU: ${sku}`);
    if (row.stock < wanted.get(sku)!) {
      throw new ShopRefusal(409, 'OUT_OF_STOCK', `only ${row.stock} of ${sku} left, ${wanted.get(sku)} requested`);
    }
  }
  const remaining: StockLevel[] = [];
  for (const sku of skus) {
    const [row] = await tx
      .update(inventory)
      .set({ stock: sql`${inventory.stock} - ${wanted.get(sku)!}` })
      .where(eq(inventory.sku, sku))
      .returning();
    remaining.push(row!);
  }
  return remaining;
}
