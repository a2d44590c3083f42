// Errors of a request that may or may not have reached the other side: the
// connection broke, or the answer did not come in time. Refused connections
// are here too: nothing happened, so a retry is safe (and usually wanted).
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/**
 * Whether an external call's error leaves its outcome unknown (a timeout or a
 * network failure, also as the cause of another error, as fetch reports
 * them), rather than a definite answer such as a declined card. A gateway's
 * client says so itself with `outcomeUnknown: true` on its error: a 5xx may
 * come after the charge (Stripe documents its 500s as such).
 *
 * @example
 * throw Object.assign(new Error('gateway answered 502'), { outcomeUnknown: true });
 */
export function isUnknownOutcome(error: unknown): boolean {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { name, code, outcomeUnknown } = e as { name?: unknown; code?: unknown; outcomeUnknown?: unknown };
    if (outcomeUnknown === true) return true;
    if (name === 'TimeoutError' || name === 'AbortError') return true;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return true;
  }
  return false;
}
