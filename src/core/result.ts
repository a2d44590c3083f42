import { IdempotencyResultInvalidError } from '../shared/errors.js';
import { isExactText } from '../shared/key.js';

/** Default bound on a stored result: 1 MiB of JSON. */
export const DEFAULT_MAX_RESULT_BYTES = 1024 * 1024;

/**
 * Serialises `fn`'s result for the `response` column, or throws
 * `IDEMPOTENCY_RESULT_INVALID`. Rejects what JSON would silently change
 * (NaN, functions, symbols) as well as what it cannot hold (BigInt, cycles),
 * because a replay must equal the first answer, and what jsonb refuses (NUL
 * or a lone surrogate in a key or string), so that the store never fails with
 * an untyped driver error a caller would take for a fault worth retrying.
 * `undefined` is kept by the `{ "value": … }` envelope: a void `fn` replays as void.
 *
 * @example
 * serializeResult({ id: 1 }, DEFAULT_MAX_RESULT_BYTES) // '{"value":{"id":1}}'
 */
export function serializeResult(value: unknown, maxBytes: number): string {
  let json: string;
  try {
    json = JSON.stringify({ value }, (key, v: unknown) => {
      // jsonb refuses \u0000 (22P05) and the \udXXX escape JSON.stringify writes for a lone surrogate (22P02).
      if (!isExactText(key)) throw new IdempotencyResultInvalidError('result holds an object key with a NUL or a lone surrogate');
      switch (typeof v) {
        case 'bigint':
        case 'function':
        case 'symbol':
          throw new IdempotencyResultInvalidError(`result holds a ${typeof v}, which JSON cannot store`);
        case 'number':
          if (!Number.isFinite(v)) throw new IdempotencyResultInvalidError(`result holds ${String(v)}, which JSON cannot store`);
          return v;
        case 'string':
          if (!isExactText(v)) throw new IdempotencyResultInvalidError('result holds a string with a NUL or a lone surrogate');
          return v;
        default:
          return v;
      }
    });
  } catch (error) {
    if (error instanceof IdempotencyResultInvalidError) throw error;
    throw new IdempotencyResultInvalidError('result is not JSON-serialisable (a cycle, a getter that throws, or nesting too deep?)', { cause: error });
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

type AnyFunction = (...args: never[]) => unknown;
/** Members JSON.stringify leaves out of an object (and writes as null in an array). */
type Omitted = undefined | symbol | AnyFunction;

/**
 * What a value of type `T` becomes once stored as JSON and read back: what
 * `withIdempotency` returns, on the first execution as on every replay. A
 * `Date` (or anything with `toJSON`) becomes what `toJSON` returns, members
 * that are `undefined` or functions disappear, `undefined` in an array becomes
 * `null`. The compiler then catches `.getTime()` on a stored Date, which would
 * otherwise fail only on a production retry.
 *
 * @example
 * type Row = Jsonified<{ id: number; paidAt: Date; note?: string }>; // { id: number; paidAt: string; note?: string }
 */
export type Jsonified<T> = unknown extends T
  ? T
  : T extends { toJSON(...args: never[]): infer J }
    ? Jsonified<J>
    : T extends string | number | boolean | null | undefined | void
      ? T
      : T extends bigint | symbol | AnyFunction
        ? never
        : T extends readonly unknown[]
          ? { [I in keyof T]: JsonifiedElement<T[I]> }
          : T extends object
            ? JsonifiedObject<T>
            : never;

// Distributes over a union: (string | undefined)[] becomes (string | null)[].
type JsonifiedElement<E> = E extends Omitted ? null : Jsonified<E>;

type KeptKeys<T> = { [K in keyof T]-?: K extends symbol ? never : [T[K]] extends [Omitted] ? never : K }[keyof T];
type RequiredKeys<T> = { [K in KeptKeys<T>]: undefined extends T[K] ? never : K }[KeptKeys<T>];
type OptionalKeys<T> = Exclude<KeptKeys<T>, RequiredKeys<T>>;

// One mapped type per kind of member, flattened so editors show a plain object type.
type JsonifiedObject<T> = Flatten<
  { [K in RequiredKeys<T>]: Jsonified<T[K]> } & { [K in OptionalKeys<T>]?: Jsonified<Exclude<T[K], Omitted>> }
>;
type Flatten<T> = { [K in keyof T]: T[K] } & {};
