import { IdempotencyOptionsInvalidError } from './errors.js';

/** Milliseconds, or a string such as `'500ms'`, `'30s'`, `'15m'`, `'24h'`, `'7d'`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
// Postgres intervals go far beyond this; the bound exists to catch unit mistakes
// (a TTL in seconds passed as milliseconds is 1000x off, never ten years).
const MAX_MS = 10 * 365 * UNIT_MS.d;

/**
 * Parses a duration into whole milliseconds, or throws `IDEMPOTENCY_OPTIONS_INVALID`.
 *
 * @example
 * parseDuration('24h', 'ttl') // 86_400_000
 */
export function parseDuration(value: unknown, name: string): number {
  let ms: number | undefined;
  if (typeof value === 'number') ms = value;
  else if (typeof value === 'string') {
    const match = PATTERN.exec(value.trim());
    if (match) ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  }
  if (ms === undefined || !Number.isFinite(ms) || ms < 1 || ms > MAX_MS) {
    throw new IdempotencyOptionsInvalidError(
      `${name} must be a duration from 1 ms to 10 years (milliseconds or e.g. '24h'), got ${JSON.stringify(value) ?? String(value)}`,
    );
  }
  return Math.round(ms);
}

// The longest delay Node's timers take: past it, setTimeout and setInterval
// fire after 1 ms instead (a busy loop, or a timeout that ends everything at once).
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `parseDuration` for a delay a timer waits (a heartbeat, a call's timeout,
 * a polling interval): at most 2^31 - 1 ms (24.8 days), or `IDEMPOTENCY_OPTIONS_INVALID`.
 *
 * @example
 * parseTimerDuration('5s', 'interval') // 5_000
 */
export function parseTimerDuration(value: unknown, name: string): number {
  const ms = parseDuration(value, name);
  if (ms > MAX_TIMER_MS) {
    throw new IdempotencyOptionsInvalidError(`${name} is waited for by a timer, which takes at most 24.8 days (2^31 - 1 ms), got ${JSON.stringify(value)}`);
  }
  return ms;
}
