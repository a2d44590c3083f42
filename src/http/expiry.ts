/**
 * The response header that says when the key expires, sent with `expiryHeader: true`.
 * The IETF draft names no such header; this one follows its `Idempotency-Key`
 * prefix and carries an HTTP-date, as `Expires`, `Retry-After` and `Sunset` do,
 * which every HTTP client can parse.
 */
export const EXPIRES_HEADER = 'Idempotency-Key-Expires';

/**
 * An IMF-fixdate (RFC 9110), rounded down to the second: until then, at least,
 * a retry with the key replays.
 *
 * @example
 * httpDate(new Date(Date.UTC(2026, 11, 1, 14, 0, 0, 900))) // 'Tue, 01 Dec 2026 14:00:00 GMT'
 */
export function httpDate(at: Date): string {
  return at.toUTCString();
}
