import { createHash } from 'node:crypto';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { isExactText } from '../shared/key.js';

/** What a request is compared by: any JSON value, or a hash you computed. */
export type Fingerprint = string | number | boolean | null | readonly Fingerprint[] | { readonly [key: string]: Fingerprint | undefined };

/**
 * JSON with object keys sorted at every depth, so `{a,b}` and `{b,a}` agree.
 *
 * @example
 * canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] }) // '{"a":[2,{"c":4,"d":3}],"b":1}'
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint' || typeof v === 'function' || typeof v === 'symbol') {
      throw new IdempotencyOptionsInvalidError(`fingerprint holds a ${typeof v}, which JSON cannot represent`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}

/**
 * The stored form of a fingerprint: a string is kept as given (a precomputed
 * hash), anything else is the SHA-256 of its canonical JSON.
 *
 * @example
 * fingerprintOf({ amount: 500, currency: 'eur' }) // 'sha256:…'
 */
export function fingerprintOf(value: Fingerprint | undefined): string | null {
  if (value === undefined) return null;
  if (typeof value === 'string') {
    // Stored as text and compared as given: what the driver would alter could match another request.
    if (value.length === 0 || value.length > 1024 || !isExactText(value)) {
      throw new IdempotencyOptionsInvalidError('a precomputed fingerprint must be 1 to 1024 characters of well-formed text without NUL');
    }
    return value;
  }
  let json: string;
  try {
    json = canonicalJson(value);
  } catch (error) {
    if (error instanceof IdempotencyOptionsInvalidError) throw error;
    throw new IdempotencyOptionsInvalidError('fingerprint is not JSON-serialisable', { cause: error });
  }
  return `sha256:${createHash('sha256').update(json).digest('base64url')}`;
}
