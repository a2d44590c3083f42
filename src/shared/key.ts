import { IdempotencyKeyInvalidError, IdempotencyOptionsInvalidError } from './errors.js';

/** Longest key accepted, as in Stripe's API and the IETF draft's guidance. */
export const MAX_KEY_LENGTH = 255;

// C0 controls and DEL: they break logs and headers, and no generator emits them.
const CONTROL = /[\u0000-\u001f\u007f]/;

// In a `u` regex, \p{Cs} matches only surrogates that are not part of a pair.
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * True when Postgres `text` stores `value` exactly as given. node-postgres
 * encodes a lone surrogate as U+FFFD (so two different strings become one) and
 * `text` cannot hold NUL, so either would make a key or scope match another.
 *
 * @example
 * isExactText('tenant-\ud800') // false
 */
export function isExactText(value: string): boolean {
  return !LONE_SURROGATE.test(value) && !value.includes('\u0000');
}

/**
 * Checks an idempotency key, or throws `IDEMPOTENCY_KEY_INVALID`.
 *
 * @example
 * assertValidKey(req.get('Idempotency-Key'))
 */
export function assertValidKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') throw new IdempotencyKeyInvalidError('idempotency key must be a string');
  if (key.length === 0) throw new IdempotencyKeyInvalidError('idempotency key must not be empty');
  if (key.length > MAX_KEY_LENGTH) {
    throw new IdempotencyKeyInvalidError(`idempotency key is ${key.length} characters; at most ${MAX_KEY_LENGTH} are allowed`);
  }
  if (CONTROL.test(key)) throw new IdempotencyKeyInvalidError('idempotency key must not contain control characters');
  if (!isExactText(key)) throw new IdempotencyKeyInvalidError('idempotency key must be well-formed UTF-16 (it holds a lone surrogate)');
}

/**
 * Checks a scope (empty is allowed: the global scope), or throws `IDEMPOTENCY_OPTIONS_INVALID`.
 *
 * @example
 * assertValidScope(req.user.tenantId)
 */
export function assertValidScope(scope: unknown): asserts scope is string {
  if (typeof scope !== 'string' || scope.length > MAX_KEY_LENGTH || CONTROL.test(scope) || !isExactText(scope)) {
    throw new IdempotencyOptionsInvalidError(
      `scope must be a well-formed string of at most ${MAX_KEY_LENGTH} characters without control characters`,
    );
  }
}
