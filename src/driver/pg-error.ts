// Drivers and drizzle wrap the server's error (DrizzleQueryError has the driver
// error as `cause`), so the SQLSTATE can sit a few levels down.
const SQLSTATE = /^[0-9A-Z]{5}$/;

/** The first `code` along the `cause` chain that `accept` takes, or undefined. */
export function findCode(error: unknown, accept: (code: string) => boolean): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && accept(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Whether `error` is drizzle's wrapper around a failed query (DrizzleQueryError:
 * the query and every parameter in its message, the driver's error as its
 * cause). Told by shape, not class (drizzle-orm 0.44 and 1.0 each have their
 * own, and another realm's fails `instanceof`); postgres.js and PGlite errors
 * carry the query too, but their message is the server's.
 */
export function isQueryWrapper(error: unknown): error is { message: string; cause?: unknown } {
  if (typeof error !== 'object' || error === null || !('query' in error) || !('params' in error)) return false;
  const message = (error as { message?: unknown }).message;
  return typeof message === 'string' && message.startsWith('Failed query');
}

/**
 * The SQLSTATE the server answered a statement with, when `error` is that
 * answer as a driver threw it (or drizzle's wrapper around it); undefined for
 * anything else, such as an error of the caller's that merely has one as its cause.
 */
export function statementState(error: unknown): string | undefined {
  const answer = isQueryWrapper(error) ? error.cause : error;
  const code = (answer as { code?: unknown } | null)?.code;
  return typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
}

/** The Postgres SQLSTATE of an error thrown by any driver, or undefined. */
export const sqlState = (error: unknown): string | undefined => findCode(error, (code) => SQLSTATE.test(code));

export const SERIALIZATION_FAILURE = '40001';
export const LOCK_NOT_AVAILABLE = '55P03';
export const UNDEFINED_TABLE = '42P01';
export const DUPLICATE_TABLE = '42P07';
export const DIVISION_BY_ZERO = '22012';
export const DEADLOCK_DETECTED = '40P01';
export const QUERY_CANCELED = '57014';
export const IN_FAILED_SQL_TRANSACTION = '25P02';
export const READ_ONLY_SQL_TRANSACTION = '25006';
