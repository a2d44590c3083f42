/**
 * What went wrong, in words a person can act on. Drizzle wraps driver errors
 * in one whose message is the whole failed query; the driver's own message
 * ("permission denied for table …", "connect ECONNREFUSED …") sits in `cause`,
 * on the first error that carries a `code` (a SQLSTATE or a socket error).
 */
export function errorMessage(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (typeof (current as { code?: unknown }).code === 'string' && current.message) return current.message;
    current = current.cause;
  }
  return error instanceof Error ? error.message : String(error);
}
