// One request of part 5, shared by the process that is killed and by the
// client that retries after it: the same key, the same approach, the same
// business transaction.
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { Redis } from 'ioredis';
import { IdempotencyInFlightError } from '../src/index.js';
import { charge } from './business.js';
import { RedisKeyInFlightError, withRedisIdempotency, type RedisIdempotencyOptions } from './redis-idempotency.js';
import { chargeIdempotently, type ReplayKey } from './scenarios.js';

export type Approach = 'redis' | 'library';
/** before-commit: the business statements (and our store) ran, COMMIT was never sent.
 * after-commit: COMMIT succeeded on the server, the process died before acting on it. */
export type KillPoint = 'before-commit' | 'after-commit';

/** What the parent hands the child, as JSON in an environment variable. */
export interface CrashSpec {
  url: string;
  redisUrl: string;
  approach: Approach;
  point: KillPoint;
  redisOptions: RedisIdempotencyOptions;
  requests: ReplayKey[];
}

export const CRASH_SPEC_VARIABLE = 'BENCH_CRASH_SPEC';

export interface CrashDeps {
  db: NodePgDatabase;
  redis: Redis;
  redisOptions: RedisIdempotencyOptions;
}

export async function request(approach: Approach, deps: CrashDeps, r: ReplayKey): Promise<{ replayed: boolean }> {
  if (approach === 'library') return chargeIdempotently(deps.db, r.key, r.scope, r.sku);
  return withRedisIdempotency(deps.redis, r.key, () => deps.db.transaction((tx) => charge(tx, r.key, r.sku)), deps.redisOptions);
}

/** The answers a client retries on: the key is held by a request in flight. */
export function isInFlight(error: unknown): boolean {
  return error instanceof RedisKeyInFlightError || error instanceof IdempotencyInFlightError;
}
