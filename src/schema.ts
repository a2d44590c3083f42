// `drizzle-idempotency/schema`: the table alone, for your own drizzle-kit
// schema. drizzle-kit loads schema files with require(), and the rest of the
// package is ESM, so this entry is also built as CommonJS (dist/cjs); it holds
// table definitions only, which drizzle compares by kind, not by identity, so
// the two builds cannot disagree.
export { idempotencyKeys, idempotencyKeysIn, IDEMPOTENCY_KEYS_TABLE } from './schema/table.js';
export type { IdempotencyKeyStatus } from './schema/table.js';
