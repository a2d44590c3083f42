import { isQueryWrapper, sqlState } from './pg-error.js';

/**
 * A failure of one of the library's own statements, stripped of what could
 * carry customer data into logs: drizzle's wrapper prints every parameter
 * (the stored response, the fingerprint), and the server's `detail` may show
 * the failing row. Keeps the SQLSTATE (or socket error code) and the server's
 * message, which is what an operator acts on.
 */
export class RedactedDatabaseError extends Error {
  readonly code: string | undefined;

  constructor(message: string, code: string | undefined) {
    super(message);
    this.name = 'DatabaseError';
    this.code = code;
  }
}

/**
 * `error` as a `RedactedDatabaseError`. Data exceptions (SQLSTATE class 22)
 * may quote the offending value in their message too, so theirs is replaced.
 *
 * @example
 * try { await db.execute(store) } catch (e) { throw redact(e) }
 */
export function redact(error: unknown): RedactedDatabaseError {
  if (error instanceof RedactedDatabaseError) return error;
  const state = sqlState(error);
  const code = state ?? socketCode(error);
  const message = state?.startsWith('22')
    ? `the database refused a value in the library's statement (SQLSTATE ${state})`
    : driverMessage(error);
  return new RedactedDatabaseError(message, code);
}

/** The driver's own words: the first error along the chain that is not drizzle's query wrapper. */
function driverMessage(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 5; depth++) {
    if (isQueryWrapper(current)) current = current.cause;
    else if (typeof (current as { message?: unknown } | null)?.message === 'string') return (current as { message: string }).message;
    else break;
  }
  return 'a statement failed';
}

function socketCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
