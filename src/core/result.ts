import { types } from 'node:util';
import { IdempotencyResultInvalidError } from '../shared/errors.js';
import { isExactText } from '../shared/key.js';

/** Default bound on a stored result: 1 MiB of JSON. */
export const DEFAULT_MAX_RESULT_BYTES = 1024 * 1024;

/**
 * What JSON.stringify writes as `{}` (or as an object of indices), losing the
 * value: the name of the kind, or undefined for a value JSON keeps. Brand
 * checks, so that neither another realm nor `Symbol.toStringTag` fools them.
 */
function lossyKind(v: object): string | undefined {
  const proto: unknown = Object.getPrototypeOf(v);
  // Plain objects and arrays, most of any result: nothing to lose.
  if (proto === Object.prototype || proto === null || proto === Array.prototype) return undefined;
  if (types.isMap(v)) return 'a Map';
  if (types.isSet(v)) return 'a Set';
  if (types.isWeakMap(v)) return 'a WeakMap';
  if (types.isWeakSet(v)) return 'a WeakSet';
  if (types.isNativeError(v) || v instanceof Error) return 'an Error';
  if (types.isRegExp(v)) return 'a RegExp';
  if (types.isTypedArray(v)) return 'a typed array';
  if (types.isAnyArrayBuffer(v)) return 'an ArrayBuffer';
  if (types.isDataView(v)) return 'a DataView';
  if (types.isPromise(v)) return 'a Promise';
  if (Array.isArray(v) || types.isBoxedPrimitive(v)) return undefined;
  // A class instance whose value lives in getters on its prototype: JSON
  // writes own properties only, so those values would be missing on a replay.
  for (let p = proto; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const [name, member] of Object.entries(Object.getOwnPropertyDescriptors(p))) {
      if (member.get) return `an object whose ${JSON.stringify(name)} is a getter on its class`;
    }
  }
  // An iterable whose entries live in internal slots (FormData, Headers, an
  // iterator such as map.values()): no own member, so JSON writes `{}`. (Not
  // every object without own members: a zero node-postgres interval is one.)
  if (Symbol.iterator in v && Object.keys(v).length === 0) return `${className(v)}, an iterable whose entries JSON writes as {}`;
  return undefined;
}

function className(v: object): string {
  const name = (v.constructor as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' && name !== '' ? `a ${name}` : 'an object';
}

/**
 * Serialises `fn`'s result for the `response` column, or throws
 * `IDEMPOTENCY_RESULT_INVALID`. Rejects what JSON would silently change
 * (NaN, functions, symbols; Map, Set, Error, RegExp, typed arrays, buffers,
 * promises, an invalid Date, values in prototype getters, iterables without
 * own members such as FormData, Headers or an iterator, all of which JSON
 * writes as `{}`, `null` or not at all) as well as what it cannot hold
 * (BigInt, cycles), because a replay must equal the first answer, and what
 * jsonb refuses (NUL or a lone surrogate in a key or string), so that the
 * store never fails with an untyped driver error a caller would take for a
 * fault worth retrying. What has a `toJSON` is checked as what it returns
 * (a Date as its string, a Buffer as `{ type, data }`). `undefined` is kept
 * by the `{ "value": … }` envelope: a void `fn` replays as void.
 *
 * @example
 * serializeResult({ id: 1 }, DEFAULT_MAX_RESULT_BYTES) // '{"value":{"id":1}}'
 */
export function serializeResult(value: unknown, maxBytes: number): string {
  let json: string;
  try {
    // `v` is what toJSON returned, if the member has one; `this[key]` the member itself.
    json = JSON.stringify({ value }, function (this: Record<string, unknown>, key, v: unknown) {
      // jsonb refuses \u0000 (22P05) and the \ud800-style escape JSON.stringify writes for a lone surrogate (22P02).
      if (!isExactText(key)) throw new IdempotencyResultInvalidError('result holds an object key with a NUL or a lone surrogate');
      switch (typeof v) {
        case 'object': {
          if (v === null) {
            if (types.isDate(this[key])) throw new IdempotencyResultInvalidError('result holds an invalid Date, which JSON writes as null');
            return v;
          }
          const kind = lossyKind(v);
          if (kind) throw new IdempotencyResultInvalidError(`result holds ${kind}, which JSON would not store as it is (convert it first)`);
          return v;
        }
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
 * What JSON.stringify writes as `{}` or as an object of indices, losing the
 * value: `serializeResult` refuses them (IDEMPOTENCY_RESULT_INVALID), and
 * `Jsonified` makes them `never`, so that the compiler flags their use.
 */
type Lossy =
  | ReadonlyMap<unknown, unknown>
  | ReadonlySet<unknown>
  | WeakMap<object, unknown>
  | WeakSet<object>
  | RegExp
  | ArrayBufferView
  | ArrayBufferLike
  | Promise<unknown>;
// Any object with a name and a message has the shape of an Error; a `stack`
// member (optional, but declared by every Error type) tells the real ones.
type IsError<T> = T extends Error ? ('stack' extends keyof T ? true : false) : false;

/**
 * What a value of type `T` becomes once stored as JSON and read back: what
 * `withIdempotency` returns, on the first execution as on every replay. A
 * `Date` (or anything with `toJSON`) becomes what `toJSON` returns, members
 * that are `undefined` or functions disappear, `undefined` in an array becomes
 * `null`. The compiler then catches `.getTime()` on a stored Date, which would
 * otherwise fail only on a production retry. What JSON would write as `{}`
 * (Map, Set, WeakMap, WeakSet, Error, RegExp, typed arrays, ArrayBuffer,
 * DataView, Promise) is `never`: the library refuses to store it. `any` stays `any`.
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
      : T extends bigint | symbol | AnyFunction | Lossy
        ? never
        : IsError<T> extends true
          ? never
          : T extends readonly unknown[]
            ? { [I in keyof T]: JsonifiedElement<T[I]> }
            : T extends object
              ? JsonifiedObject<T>
              : never;

// Distributes over a union: (string | undefined)[] becomes (string | null)[].
type JsonifiedElement<E> = E extends Omitted ? null : Jsonified<E>;

// `0 extends 1 & X` holds only when X is any: an `any` member is kept, and kept required.
type IsAny<X> = 0 extends 1 & X ? true : false;
type KeptKeys<T> = {
  [K in keyof T]-?: K extends symbol ? never : IsAny<T[K]> extends true ? K : [T[K]] extends [Omitted] ? never : K;
}[keyof T];
type RequiredKeys<T> = { [K in KeptKeys<T>]: IsAny<T[K]> extends true ? K : undefined extends T[K] ? never : K }[KeptKeys<T>];
type OptionalKeys<T> = Exclude<KeptKeys<T>, RequiredKeys<T>>;

// One mapped type per kind of member, flattened so editors show a plain object type.
type JsonifiedObject<T> = Flatten<
  { [K in RequiredKeys<T>]: Jsonified<T[K]> } & { [K in OptionalKeys<T>]?: Jsonified<Exclude<T[K], Omitted>> }
>;
type Flatten<T> = { [K in keyof T]: T[K] } & {};
