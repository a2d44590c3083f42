import { validateHeaderName, validateHeaderValue } from 'node:http';
import { IdempotencyResultInvalidError } from '../shared/errors.js';

/** A header value as a handler may give it. */
export type HeaderValue = string | number | readonly string[];

/**
 * What an idempotent route handler answers. The body is sent as JSON (or as
 * text when it is a string and `content-type` says text); it is stored as JSON,
 * so it must be JSON-serialisable.
 */
export interface IdempotentResponse<TBody = unknown> {
  /** (Default: 200) */
  status?: number;
  body?: TBody;
  headers?: Readonly<Record<string, HeaderValue>>;
}

/** A response with its status checked and header names lower-cased. */
export interface NormalizedResponse {
  status: number;
  body?: unknown;
  headers: Record<string, string | string[]>;
}

/**
 * Checks what the handler returned, or throws `IDEMPOTENCY_RESULT_INVALID`.
 * Runs inside the transaction: a response Node would refuse to send must fail
 * before COMMIT, never after it (a committed key whose answer cannot be sent
 * would fail on every replay too). Header values Node accepts are Latin-1
 * without controls, so they reach jsonb unaltered.
 *
 * @example
 * normalizeResponse({ status: 201, headers: { Location: '/payments/1' } }) // { status: 201, headers: { location: '/payments/1' } }
 */
export function normalizeResponse(response: IdempotentResponse | undefined): NormalizedResponse {
  if (typeof response !== 'object' || response === null) {
    throw new IdempotencyResultInvalidError('an idempotent handler must return { status, body, headers }');
  }
  const status = response.status ?? 200;
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new IdempotencyResultInvalidError(`an idempotent handler returned status ${String(status)}; use 200 to 599`);
  }
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(response.headers ?? {})) {
    const lower = name.toLowerCase();
    const normalized = Array.isArray(value) ? value.map(String) : String(value);
    try {
      validateHeaderName(lower);
      for (const v of Array.isArray(normalized) ? normalized : [normalized]) validateHeaderValue(lower, v);
    } catch (error) {
      throw new IdempotencyResultInvalidError(`an idempotent handler returned a header Node cannot send: ${JSON.stringify(lower)}`, { cause: error });
    }
    headers[lower] = normalized;
  }
  return response.body === undefined ? { status, headers } : { status, body: response.body, headers };
}

/** The part of a response that is stored for replays: only the allowed headers. */
export function storedForm(response: NormalizedResponse, storedHeaders: ReadonlySet<string>): NormalizedResponse {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(response.headers)) if (storedHeaders.has(name)) headers[name] = value;
  return response.body === undefined ? { status: response.status, headers } : { status: response.status, body: response.body, headers };
}

const JSON_TYPE = /^\s*application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;
const CHARSET = /;\s*charset\s*=/i;

/** Whether a body goes out as UTF-8 text rather than as JSON: a string under a content-type that is not JSON. */
export function isTextBody(body: unknown, type: unknown): body is string {
  return typeof body === 'string' && typeof type === 'string' && !JSON_TYPE.test(type);
}

/**
 * The content-type an answer goes out with: the handler's, with `charset=utf-8`
 * added when it names none, or JSON's when it gave none (as Express would).
 *
 * @example
 * contentTypeOf('text/csv') // 'text/csv; charset=utf-8'
 */
export function contentTypeOf(type: unknown): string {
  if (typeof type !== 'string') return 'application/json; charset=utf-8';
  return CHARSET.test(type) ? type : `${type}; charset=utf-8`;
}

/** The bytes of a body: UTF-8 text, or its JSON. */
export function payloadOf(body: unknown, text: boolean): Buffer {
  return Buffer.from(text ? (body as string) : JSON.stringify(body), 'utf8');
}

/** Statuses whose answers carry no body and no framing headers, whatever the handler gave. */
export function hasNoBody(status: number): boolean {
  return status === 204 || status === 304;
}
