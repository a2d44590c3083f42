// The usual Redis idempotency middleware, as found in many services, around
// a Postgres transaction: GET the key (replay if a result is there), take a
// lock with SET NX EX, run, SET the result with a 24 h TTL. The business
// COMMIT and the result SET go to two stores, so a crash between them loses
// the result while the effect stays: that is the window part 5 counts.
import type { Redis } from 'ioredis';

export interface RedisIdempotencyOptions {
  /** Namespace of this run's keys in a shared Redis. */
  prefix: string;
  /** How long the lock outlives a crashed holder. */
  lockTtlSeconds: number;
  resultTtlSeconds: number;
}

export const RESULT_TTL_SECONDS = 24 * 60 * 60;

// A value JSON.stringify({ value }) can never produce.
const IN_FLIGHT = '!in-flight';

/** A duplicate arrived while the first request holds the lock (HTTP 409). */
export class RedisKeyInFlightError extends Error {
  constructor(key: string) {
    super(`idempotency key ${JSON.stringify(key)} is locked in Redis by a request in flight`);
    this.name = 'RedisKeyInFlightError';
  }
}

export async function withRedisIdempotency<T>(
  redis: Redis,
  key: string,
  run: () => Promise<T>,
  options: RedisIdempotencyOptions,
): Promise<{ value: T; replayed: boolean }> {
  const redisKey = options.prefix + key;
  const cached = await redis.get(redisKey);
  if (cached !== null) return replayOf<T>(key, cached);
  const locked = await redis.set(redisKey, IN_FLIGHT, 'EX', options.lockTtlSeconds, 'NX');
  if (locked === null) throw new RedisKeyInFlightError(key);
  let value: T;
  try {
    value = await run();
  } catch (error) {
    // Nothing committed: free the key so a retry can run at once.
    await redis.del(redisKey);
    throw error;
  }
  await redis.set(redisKey, JSON.stringify({ value }), 'EX', options.resultTtlSeconds);
  return { value, replayed: false };
}

function replayOf<T>(key: string, cached: string): { value: T; replayed: boolean } {
  if (cached === IN_FLIGHT) throw new RedisKeyInFlightError(key);
  return { value: (JSON.parse(cached) as { value: T }).value, replayed: true };
}
