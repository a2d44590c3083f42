import type { RequestListener } from 'node:http';
import { Readable } from 'node:stream';

/**
 * Serves a Web-standard `(Request) => Response` handler (a Hono app's `fetch`,
 * or the Web adapter itself) from node:http: every request line and header as
 * received, the body as a stream. A thrown error answers 500 with its message,
 * as an error handler of a framework would.
 */
export function webListener(handle: (request: Request) => Response | Promise<Response>): RequestListener {
  return (req, res) => {
    void (async () => {
      const headers = new Headers();
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
      const method = req.method ?? 'GET';
      const body = method === 'GET' || method === 'HEAD' ? undefined : (Readable.toWeb(req) as ReadableStream<Uint8Array>);
      let response: Response;
      try {
        response = await handle(new Request(`http://${req.headers.host}${req.url}`, { method, headers, body, duplex: 'half' } as RequestInit));
      } catch (error) {
        response = Response.json({ error: (error as Error).message }, { status: 500 });
      }
      res.statusCode = response.status;
      for (const [name, value] of response.headers) if (name !== 'set-cookie') res.setHeader(name, value);
      const cookies = response.headers.getSetCookie();
      if (cookies.length > 0) res.setHeader('set-cookie', cookies);
      res.end(Buffer.from(await response.arrayBuffer()));
    })();
  };
}
