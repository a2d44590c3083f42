import type { Request } from 'express';
import { problem } from '../problem.js';
import { cutOff, RequestProblem, tooLarge } from '../body.js';

/**
 * Makes the body as received available for the fingerprint (and the
 * handler): a value a parser left in `req.body` is kept; when no parser read
 * the stream, its raw bytes are read here, up to `maxBytes`, into `req.body` as
 * a Buffer. A body that exists but cannot be read never counts as "no body":
 * consumed by other middleware without a value (500), over the bound (413), or
 * cut off by the client (400) answers with a problem, and nothing is claimed.
 *
 * @example
 * await readBodyAsReceived(req, 1024 * 1024); // then req.body is the parsed value, a Buffer, or undefined (no body)
 */
export async function readBodyAsReceived(req: Request, maxBytes: number): Promise<void> {
  if (req.body !== undefined || !hasBody(req)) return;
  if (req.readableDidRead || req.readableEnded || req.readableFlowing === true || req.destroyed) {
    throw new RequestProblem(
      problem(
        500,
        'IDEMPOTENCY_BODY_UNREADABLE',
        'the request body was read before this route and left no parsed value, so it cannot be compared with the first request of this key',
        false,
      ),
    );
  }
  const declared = Number(req.headers['content-length']);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const bytes = await readAll(req, maxBytes);
  if (bytes.length > 0) req.body = bytes;
}

/** As body parsers decide it: a request has a body when it declares one of more than zero bytes, or is chunked. */
function hasBody(req: Request): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = Number(req.headers['content-length']);
  return Number.isFinite(length) && length > 0;
}

function readAll(req: Request, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (error?: RequestProblem) => {
      req.off('data', onData).off('end', onEnd).off('error', onFailure).off('close', onFailure);
      if (error) {
        req.pause();
        reject(error);
      } else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer | string) => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += bytes.length;
      if (size > maxBytes) return done(tooLarge(maxBytes));
      chunks.push(bytes);
    };
    const onEnd = () => done();
    const onFailure = () => done(cutOff());
    req.on('data', onData).on('end', onEnd).on('error', onFailure).on('close', onFailure);
  });
}
