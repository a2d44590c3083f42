import { createHash } from 'node:crypto';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { isExactText } from '../shared/key.js';

/** What a request is compared by: any JSON value, or a hash you computed. */
export type Fingerprint = string | number | boolean | null | readonly Fingerprint[] | { readonly [key: string]: Fingerprint | undefined };

// What is left to write, last first: literal text, a value, or an object to close.
type Task = string | { value: unknown } | { close: object };

/**
 * JSON with object members sorted at every depth, so `{a,b}` and `{b,a}` agree.
 *
 * Two values get the same text only when JSON tells them apart no better:
 * every own member is kept (`__proto__` too, as `JSON.parse` creates it), a
 * member whose value is `undefined` is left out, and whatever JSON would
 * silently turn into something else is refused with `IDEMPOTENCY_OPTIONS_INVALID`:
 * NaN and ±Infinity (null), Map, Set and class instances (`{}`), Dates, typed
 * arrays and objects with `toJSON` (their JSON form, which another value can
 * share), holes and `undefined` in arrays (null), symbol keys, BigInt, functions
 * and cycles. Plain objects (also without a prototype), arrays, strings, finite
 * numbers, booleans and null are accepted; convert anything else first (for
 * example `date.toISOString()`, `[...set].sort()`). Walks iteratively, so deep
 * nesting costs memory, not the call stack.
 *
 * @example
 * canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] }) // '{"a":[2,{"c":4,"d":3}],"b":1}'
 */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  // Objects being written, for cycles; the same object twice side by side is fine.
  const open = new Set<object>();
  const tasks: Task[] = [{ value }];
  for (let task = tasks.pop(); task !== undefined; task = tasks.pop()) {
    if (typeof task === 'string') {
      out.push(task);
      continue;
    }
    if ('close' in task) {
      open.delete(task.close);
      continue;
    }
    const v = task.value;
    if (typeof v === 'string' || typeof v === 'boolean' || v === null) {
      out.push(JSON.stringify(v));
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw refused(`${String(v)}, which JSON writes as null`);
      out.push(JSON.stringify(v));
    } else if (typeof v !== 'object') {
      throw refused(v === undefined ? 'undefined where JSON would write null or nothing' : `a ${typeof v}, which JSON cannot represent`);
    } else {
      if (open.has(v)) throw refused('a cycle');
      open.add(v);
      tasks.push({ close: v });
      if (Array.isArray(v)) pushArray(v, tasks);
      else pushObject(v, tasks);
    }
  }
  return out.join('');
}

function pushArray(array: readonly unknown[], tasks: Task[]): void {
  if (Object.getPrototypeOf(array) !== Array.prototype) throw refused('an Array subclass');
  tasks.push(']');
  for (let i = array.length - 1; i >= 0; i--) {
    if (!(i in array) || array[i] === undefined) throw refused('a hole or undefined in an array, which JSON writes as null');
    tasks.push({ value: array[i] });
    if (i > 0) tasks.push(',');
  }
  tasks.push('[');
}

function pushObject(object: object, tasks: Task[]): void {
  const proto: unknown = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    const name = (object.constructor as { name?: unknown } | undefined)?.name;
    throw refused(`${typeof name === 'string' && name !== '' ? `a ${name}` : 'an instance of a class'}, which JSON would not write faithfully`);
  }
  if (Object.getOwnPropertySymbols(object).length > 0) throw refused('a symbol-keyed member, which JSON leaves out');
  const record = object as Record<string, unknown>;
  const members = Object.keys(record)
    .sort()
    .filter((k) => record[k] !== undefined);
  tasks.push('}');
  for (let i = members.length - 1; i >= 0; i--) {
    const k = members[i]!;
    tasks.push({ value: record[k] }, `${JSON.stringify(k)}:`);
    if (i > 0) tasks.push(',');
  }
  tasks.push('{');
}

function refused(what: string): IdempotencyOptionsInvalidError {
  return new IdempotencyOptionsInvalidError(`fingerprint holds ${what}; a fingerprint is plain JSON data`);
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
    // A getter that throws, a proxy: whatever it is, this value cannot be compared.
    throw new IdempotencyOptionsInvalidError('fingerprint could not be read as JSON', { cause: error });
  }
  return `sha256:${createHash('sha256').update(json).digest('base64url')}`;
}
