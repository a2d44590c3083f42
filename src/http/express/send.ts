import type { Response } from 'express';
import { REPLAYED_HEADER } from '../../shared/header.js';
import { EXPIRES_HEADER, httpDate } from '../expiry.js';
import { contentTypeOf, hasNoBody, isTextBody, payloadOf, type NormalizedResponse } from '../response.js';

/**
 * Writes a response; `replayed` adds `Idempotent-Replayed: true`. A string body
 * under a content-type that is not JSON is sent as UTF-8 text, anything else
 * as JSON, as Express would. It uses only `setHeader` and `end` with values
 * checked before COMMIT, never Express's content-type parsing, because what it
 * throws after COMMIT would fail every replay of the stored answer too.
 *
 * @example
 * sendResponse(res, { status: 201, body: { id: 1 }, headers: { location: '/payments/1' } }, false, undefined)
 */
export function sendResponse(res: Response, response: NormalizedResponse, replayed: boolean, expiresAt: Date | undefined): void {
  res.statusCode = response.status;
  for (const [name, value] of Object.entries(response.headers)) res.setHeader(name, value);
  if (replayed) res.setHeader(REPLAYED_HEADER, 'true');
  if (expiresAt !== undefined) res.setHeader(EXPIRES_HEADER, httpDate(expiresAt));
  const { body, status } = response;
  if (hasNoBody(status)) {
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
  const sent = contentTypeOf(type);
  if (sent !== type) res.setHeader('content-type', sent);
  const payload = payloadOf(body, isTextBody(body, type));
  // Ours, not the handler's: a wrong length would break the message framing.
  if (res.getHeader('transfer-encoding') === undefined) res.setHeader('content-length', payload.length);
  res.end(payload);
}
