import { IdempotencyResultInvalidError } from '../shared/errors.js';

/** Default bound on a stored result: 1 MiB of JSON. */
export const DEFAULT_MAX_RESULT_BYTES = 1024 * 1024;

/**
 * Serialises `fn`'s result for the `response` column, or throws
 * `IDEMPOTENCY_RESULT_INVALID`. Rejects what JSON would silently change
 * (NaN, functions, symbols) as well as what it cannot hold (BigInt, cycles),
 * because a replay must equal the first answer. `undefined` is kept by the
 * `{ "value": … }` envelope: a void `fn` replays as void.
 */
export function serializeResult(value: unknown, maxBytes: number): string {
  let json: string;
  try {
    json = JSON.stringify({ value }, (_key, v: unknown) => {
      switch (typeof v) {
        case 'bigint':
        case 'function':
        case 'symbol':
          throw new IdempotencyResultInvalidError(`result holds a ${typeof v}, which JSON cannot store`);
        case 'number':
          if (!Number.isFinite(v)) throw new IdempotencyResultInvalidError(`result holds ${String(v)}, which JSON cannot store`);
          return v;
        case 'string':
          // jsonb refuses \u0000; fail here with our code rather than with SQLSTATE 22P05.
          if (v.includes('\u0000')) throw new IdempotencyResultInvalidError('result holds a string with a NUL character');
          return v;
        default:
          return v;
      }
    });
  } catch (error) {
    if (error instanceof IdempotencyResultInvalidError) throw error;
    throw new IdempotencyResultInvalidError('result is not JSON-serialisable (a cycle?)', { cause: error });
  }
  const bytes = Buffer.byteLength(json);
  if (bytes > maxBytes) {
    throw new IdempotencyResultInvalidError(`result is ${bytes} bytes of JSON; the limit is ${maxBytes}`);
  }
  return json;
}

/** Reads the envelope written by `serializeResult`. */
export function deserializeResult<T>(stored: unknown): T {
  const parsed = typeof stored === 'string' ? (JSON.parse(stored) as unknown) : stored;
  return (parsed as { value?: T } | null)?.value as T;
}
