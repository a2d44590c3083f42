/**
 * Full-jitter backoff: a uniformly random delay in `[0, min(cap, base * 2^attempt))`.
 * Spreading retries over the whole window, rather than around its end, is what
 * keeps a crowd of clients that failed together from retrying together.
 *
 * @example
 * fullJitterDelay(2, { baseMs: 500, capMs: 8000, random: Math.random }) // somewhere in [0, 2000)
 */
export function fullJitterDelay(attempt: number, o: { baseMs: number; capMs: number; random: () => number }): number {
  const ceiling = Math.min(o.capMs, o.baseMs * 2 ** attempt);
  // A random() outside [0, 1) would break the bound; clamp instead of trusting it.
  const r = Math.min(Math.max(o.random(), 0), 1);
  return Math.floor(ceiling * r);
}

/**
 * Milliseconds to wait from a `Retry-After` value (delay-seconds or an
 * HTTP-date), or undefined when it is absent or unreadable. A date is measured
 * from the response's own `Date` header when it has one, so a client whose
 * clock is off still waits what the server meant.
 *
 * @example
 * retryAfterMs('3') // 3000
 */
export function retryAfterMs(value: string | null, responseDate: string | null = null, now: () => number = Date.now): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  const sent = responseDate === null ? Number.NaN : Date.parse(responseDate);
  return Math.max(0, at - (Number.isNaN(sent) ? now() : sent));
}
