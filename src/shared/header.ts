import { IdempotencyKeyInvalidError } from './errors.js';
import { assertValidKey } from './key.js';

/** The request header that carries the key (IETF draft and Stripe spell it alike). */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';

/** The response header that marks a replayed answer. */
export const REPLAYED_HEADER = 'Idempotent-Replayed';

/**
 * Reads one `Idempotency-Key` header value, or throws `IDEMPOTENCY_KEY_INVALID`.
 *
 * Accepts both spellings in use: Stripe's bare token (`abc-123`) and the IETF
 * draft's structured-field string (`"abc-123"`, with `\"` and `\\` escapes).
 * Both name the same key, so a client may switch between them. Parameters
 * after a quoted string are rejected rather than silently ignored, and so is
 * a bare key with a comma: HTTP joins repeated header lines with commas (a
 * proxy may do it on the way), so `k1, k1` is two keys, not one.
 *
 * @example
 * parseIdempotencyKey('"8e03978e-40d5"') // '8e03978e-40d5'
 * parseIdempotencyKey('8e03978e-40d5')   // '8e03978e-40d5'
 */
export function parseIdempotencyKey(value: string): string {
  // HTTP's optional whitespace only (RFC 9110: SP and HTAB); String#trim would also drop a
  // no-break space (byte A0 in a Latin-1 header) and merge two keys into one.
  const trimmed = value.replace(/^[ \t]+|[ \t]+$/g, '');
  const key = trimmed.startsWith('"') ? parseQuoted(trimmed) : trimmed;
  if (!trimmed.startsWith('"') && key.includes(',')) {
    throw new IdempotencyKeyInvalidError(`${IDEMPOTENCY_KEY_HEADER} holds a list of keys (the header sent twice?); send one key, or quote a key that has a comma`);
  }
  assertValidKey(key);
  return key;
}

// RFC 8941 sf-string: printable ASCII, where only `"` and `\` may (and must) be escaped.
function parseQuoted(text: string): string {
  let key = '';
  for (let i = 1; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '"') {
      if (i !== text.length - 1) throw malformed('has characters after the closing quote');
      return key;
    }
    if (ch === '\\') {
      const next = text[++i];
      if (next !== '"' && next !== '\\') throw malformed('has an escape other than \\" or \\\\');
      key += next;
      continue;
    }
    const code = ch.charCodeAt(0);
    if (code < 0x20 || code > 0x7e) throw malformed('holds a character outside printable ASCII');
    key += ch;
  }
  throw malformed('has no closing quote');
}

function malformed(why: string): IdempotencyKeyInvalidError {
  return new IdempotencyKeyInvalidError(`${IDEMPOTENCY_KEY_HEADER} is a malformed structured-field string: it ${why}`);
}

/**
 * The key of a request from all its `Idempotency-Key` header lines: undefined
 * when there is none, the parsed key when there is exactly one.
 *
 * @example
 * keyFromHeaderLines(req.headersDistinct['idempotency-key'])
 */
export function keyFromHeaderLines(lines: readonly string[] | undefined): string | undefined {
  if (lines === undefined || lines.length === 0) return undefined;
  // Two lines could be two different keys; picking one would guess.
  if (lines.length > 1) throw new IdempotencyKeyInvalidError(`${IDEMPOTENCY_KEY_HEADER} was sent ${lines.length} times; send it once`);
  return parseIdempotencyKey(lines[0]!);
}
