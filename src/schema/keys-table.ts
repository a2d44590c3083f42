import { sql, type SQL } from 'drizzle-orm';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { IDEMPOTENCY_KEYS_TABLE } from './table.js';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

/** Checks a Postgres schema name given in options. */
export function assertValidSchemaName(schema: unknown): asserts schema is string {
  if (typeof schema !== 'string' || !IDENTIFIER.test(schema)) {
    throw new IdempotencyOptionsInvalidError(`schema must be a plain identifier of at most 63 characters, got ${JSON.stringify(schema)}`);
  }
}

/** The keys table, qualified by `schema` when one is given. */
export function keysTable(schema: string | undefined): SQL {
  if (schema === undefined) return sql`${sql.identifier(IDEMPOTENCY_KEYS_TABLE)}`;
  return sql`${sql.identifier(schema)}.${sql.identifier(IDEMPOTENCY_KEYS_TABLE)}`;
}

/** The keys table's oid, or NULL when it does not exist (no error, unlike naming it in a query). */
export function keysTableOid(schema: string | undefined): SQL {
  const name = schema === undefined
    ? sql`quote_ident(${IDEMPOTENCY_KEYS_TABLE})`
    : sql`quote_ident(${schema}) || '.' || quote_ident(${IDEMPOTENCY_KEYS_TABLE})`;
  return sql`to_regclass(${name})`;
}
