import type { IncomingMessage } from 'node:http';
import { listen, type Listening } from './http.js';

/** What the scripted server does with one request. */
export type Step =
  | { status: number; headers?: Record<string, string>; body?: string }
  /** Cut the connection without answering: a network error for the client. */
  | 'destroy'
  /** Never answer: a timeout for the client. */
  | 'hang';

/** A request as the scripted server saw it. */
export interface SeenRequest {
  method: string;
  key: string | undefined;
  body: string;
}

/** A loopback HTTP server that answers request n with `script(n)`, and records each request. */
export async function scriptedServer(script: (n: number) => Step): Promise<Listening & { seen: SeenRequest[] }> {
  const seen: SeenRequest[] = [];
  const server = await listen((req: IncomingMessage, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      seen.push({ method: req.method!, key: req.headers['idempotency-key'] as string | undefined, body });
      const step = script(seen.length);
      if (step === 'hang') return;
      if (step === 'destroy') return void req.socket.destroy();
      res.writeHead(step.status, step.headers).end(step.body ?? '');
    });
  });
  return Object.assign(server, { seen });
}
