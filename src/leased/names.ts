import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { isExactText, MAX_KEY_LENGTH } from '../shared/key.js';

/**
 * Checks a workflow or step name: stored in the key row and hashed into
 * downstream keys, so it must survive a round trip through the database exactly.
 */
export function assertValidName(name: unknown, what: string): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_KEY_LENGTH || !isExactText(name)) {
    throw new IdempotencyOptionsInvalidError(`${what} must be a non-empty, well-formed string of at most ${MAX_KEY_LENGTH} characters`);
  }
}
