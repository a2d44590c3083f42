// The README's "Use it in service code" example imports its tables from
// `./schema.js`: these two. Yours are whatever your app's Drizzle schema holds.
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core';

export const charges = pgTable('charges', {
  id: serial('id').primaryKey(),
  customerId: text('customer_id').notNull(),
  amount: integer('amount').notNull(),
});

export const stock = pgTable('stock', {
  sku: text('sku').primaryKey(),
  quantity: integer('quantity').notNull(),
});
