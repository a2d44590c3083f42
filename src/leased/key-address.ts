import { sql, type SQL } from 'drizzle-orm';
import { keysTable } from '../schema/keys-table.js';

/** One key row of leased work: the table it lives in, and its scope and key. */
export interface KeyAddress {
  table: SQL;
  scope: string;
  key: string;
}

/** The address of `(scope, key)` in the keys table of `schema`. */
export const keyAddress = (scope: string, key: string, schema: string | undefined): KeyAddress => ({ table: keysTable(schema), scope, key });

/** The WHERE that picks the row of `k` (the primary key). */
export const thisKey = (k: KeyAddress) => sql`scope = ${k.scope} and key = ${k.key}`;

/** The WHERE that picks the row of `k` only while `token` holds it: the fence of every write. */
export const heldBy = (k: KeyAddress, token: string) => sql`${thisKey(k)} and owner_token = ${token}::uuid and status = 'started'`;

export const now = sql`statement_timestamp()`;

/** `ms` milliseconds from now, by the database clock. */
export const fromNow = (ms: number) => sql`statement_timestamp() + ${ms} * interval '1 millisecond'`;

/** What a held row says about itself as a claim or takeover returns it. */
export const HELD_COLUMNS = sql`owner_token::text as owner_token, attempts, input::text as input, steps::text as steps, recovery_point`;
