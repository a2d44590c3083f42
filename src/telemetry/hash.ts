import * as crypto from 'node:crypto';

// crypto.hash (Node 20.12+) is about three times faster than a Hash object;
// the package supports every Node 20.
const sha256Hex: (value: string) => string =
  typeof crypto.hash === 'function'
    ? (value) => crypto.hash('sha256', value)
    : (value) => crypto.createHash('sha256').update(value).digest('hex');

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
  return sha256Hex(value).slice(0, 16);
}
