import { createHash } from 'node:crypto';

/**
 * How a scope or key appears in telemetry: the first 16 hex digits of its
 * SHA-256. Hash a key a customer quotes to find its events. A hash of a
 * guessable value (a user id) can be found by trying candidates: it keeps
 * identifiers out of plain sight, it does not make them anonymous.
 *
 * @example
 * logs.filter((e) => e.keyHash === telemetryHash('order-42'));
 */
export function telemetryHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 16);
}
