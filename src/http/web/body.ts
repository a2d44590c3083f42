import { cutOff, RequestProblem, tooLarge } from '../body.js';
import { problem } from '../problem.js';

/** A Web-standard request with its body read once: bytes for the fingerprint, a parsed value for the handler. */
export interface IdempotentWebRequest {
  /** The request as received. Its body has been read: use `body`. */
  readonly request: Request;
  /** The body, parsed: a JSON value under a JSON content-type, a string under `text/*`,
   * else the bytes; undefined when the request has none. */
  body: unknown;
  /** The body's bytes as received (the default fingerprint hashes them); undefined when there are none. */
  bytes: Uint8Array | undefined;
}

const JSON_TYPE = /^\s*application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;
const TEXT_TYPE = /^\s*text\//i;

/**
 * Reads the body once, up to `maxBytes`, into `req.bytes`, and parses it into
 * `req.body`. A body that exists but cannot be read never counts as "no body":
 * read before (500), over the bound (413), cut off (400) or not the JSON its
 * content-type says (400) answers with a problem, and nothing is claimed.
 *
 * @example
 * await readWebBody(req, 1024 * 1024); // req.bytes: the bytes as received; req.body: what the handler gets
 */
export async function readWebBody(req: IdempotentWebRequest, maxBytes: number): Promise<void> {
  const { request } = req;
  if (request.bodyUsed) {
    throw new RequestProblem(
      problem(500, 'IDEMPOTENCY_BODY_UNREADABLE', 'the request body was read before this route, so it cannot be compared with the first request of this key', false),
    );
  }
  if (request.body === null) return;
  if (Number(request.headers.get('content-length')) > maxBytes) throw tooLarge(maxBytes);
  const bytes = await readAll(request.body, maxBytes);
  if (bytes.length === 0) return;
  req.bytes = bytes;
  req.body = parse(bytes, request.headers.get('content-type'));
}

async function readAll(stream: ReadableStream<Uint8Array>, maxBytes: number): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    let chunk: Awaited<ReturnType<typeof reader.read>>;
    try {
      chunk = await reader.read();
    } catch {
      throw cutOff();
    }
    if (chunk.done) break;
    size += chunk.value.length;
    if (size > maxBytes) {
      void reader.cancel().catch(() => {});
      throw tooLarge(maxBytes);
    }
    chunks.push(chunk.value);
  }
  return Buffer.concat(chunks, size);
}

function parse(bytes: Uint8Array, type: string | null): unknown {
  if (type === null || !(JSON_TYPE.test(type) || TEXT_TYPE.test(type))) return bytes;
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  if (!JSON_TYPE.test(type)) return text;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new RequestProblem(problem(400, 'IDEMPOTENCY_BODY_UNREADABLE', 'the request body is not the JSON its content-type says', false));
  }
}
