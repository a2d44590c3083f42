import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { Response } from 'express';
import { IdempotencyResultInvalidError } from '../shared/errors.js';
import { REPLAYED_HEADER } from '../shared/header.js';

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

/**
 * Writes a response; `replayed` adds `Idempotent-Replayed: true`. A string body
 * under a content-type that is not JSON is sent as UTF-8 text, anything else
 * as JSON, as Express would. It uses only `setHeader` and `end` with values
 * checked before COMMIT, never Express's content-type parsing, because what it
 * throws after COMMIT would fail every replay of the stored answer too.
 *
 * @example
 * sendResponse(res, { status: 201, body: { id: 1 }, headers: { location: '/payments/1' } }, false)
 */
export function sendResponse(res: Response, response: NormalizedResponse, replayed: boolean): void {
  res.statusCode = response.status;
  for (const [name, value] of Object.entries(response.headers)) res.setHeader(name, value);
  if (replayed) res.setHeader(REPLAYED_HEADER, 'true');
  const { body, status } = response;
  if (status === 204 || status === 304) {
    // As Express does: these carry no body and no framing headers, whatever the handler gave.
    for (const name of ['content-type', 'content-length', 'transfer-encoding']) res.removeHeader(name);
    res.end();
    return;
  }
  if (body === undefined || status === 205) {
    res.removeHeader('transfer-encoding');
    res.setHeader('content-length', 0);
    res.end();
    return;
  }
  const type = res.getHeader('content-type');
  const text = typeof body === 'string' && typeof type === 'string' && !JSON_TYPE.test(type);
  if (typeof type !== 'string') res.setHeader('content-type', 'application/json; charset=utf-8');
  else if (!CHARSET.test(type)) res.setHeader('content-type', `${type}; charset=utf-8`);
  const payload = Buffer.from(text ? body : JSON.stringify(body), 'utf8');
  // Ours, not the handler's: a wrong length would break the message framing.
  if (res.getHeader('transfer-encoding') === undefined) res.setHeader('content-length', payload.length);
  res.end(payload);
}
