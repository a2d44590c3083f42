import type { NodePgQueryResultHKT } from 'drizzle-orm/node-postgres';
import type { PgDatabase } from 'drizzle-orm/pg-core';

/** A node-postgres database or a transaction on it: the shop's functions take either. */
export type ShopDb = PgDatabase<NodePgQueryResultHKT>;

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
