// Declarations the README's "A consumer that runs once" example assumes: a
// database and its transaction type (the charges table comes from ./schema.js).
import { drizzle } from 'drizzle-orm/node-postgres';
import type { TransactionOf } from 'drizzle-idempotency';

export const db = drizzle(process.env.DATABASE_URL!);
export type Tx = TransactionOf<typeof db>;
