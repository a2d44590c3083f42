import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, request as httpRequest, type RequestListener, type Server } from 'node:http';

/** An HTTP server on an ephemeral loopback port. */
export interface Listening {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Serves `app` (an Express app or any request listener) on 127.0.0.1, port 0. */
export async function listen(app: RequestListener): Promise<Listening> {
  const server = createServer(app);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Sends a request with raw header lines (fetch folds repeated headers into one
 * line, which cannot test a header sent twice). Resolves with status and body.
 */
export function rawRequest(url: string, method: string, rawHeaders: string[], body = ''): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // A raw header list replaces Node's defaults, Host included (which Node's server requires).
    const headers = ['host', new URL(url).host, ...rawHeaders, 'content-length', String(Buffer.byteLength(body))];
    const req = httpRequest(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
