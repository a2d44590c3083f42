import type { NodePgDatabase } from 'drizzle-orm/node-postgres';

/**
 * A node-postgres database or a transaction on it: the shop's functions take
 * either. By the methods they use, since the class both share is PgDatabase
 * on drizzle-orm 0.44/0.45 and PgAsyncDatabase on 1.0.
 */
export type ShopDb = Pick<NodePgDatabase, 'select' | 'insert' | 'update' | 'delete' | 'execute' | 'transaction'>;

/** A business decision the shop answers with a 4xx problem; stored and replayed like a success. */
export class ShopRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
