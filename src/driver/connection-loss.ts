import { findCode } from './pg-error.js';

// SQLSTATEs and socket errors that mean the session is gone: class 08
// (connection exception), the server shutting the backend down (57P01-57P03),
// and what Node reports for a socket the other side dropped.
const LOST_CODES = /^(08[0-9A-Z]{3}|57P0[123]|ECONNRESET|EPIPE|ECONNREFUSED|ETIMEDOUT|ENOTCONN|EHOSTUNREACH|ENETUNREACH|CONNECTION_(CLOSED|ENDED|DESTROYED))$/;

// node-postgres reports a dropped connection without a code, in these words.
const LOST_MESSAGES = /Connection terminated|connection error and is not queryable|Client was closed and is not queryable|write after end/i;

/**
 * Whether `error`, from any driver and wrapped by drizzle or not, says the
 * database connection was lost (so the transaction on it is gone).
 *
 * @example
 * if (isConnectionLost(error)) res.status(503).set('Retry-After', '1').end();
 */
export function isConnectionLost(error: unknown): boolean {
  if (findCode(error, (code) => LOST_CODES.test(code)) !== undefined) return true;
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (LOST_MESSAGES.test(current.message)) return true;
    current = current.cause;
  }
  return false;
}
