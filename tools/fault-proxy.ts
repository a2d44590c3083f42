// A loopback TCP proxy that loses answers on purpose: the request reaches the
// server, the server does the work and answers, and the client never hears
// of it. That is the double-charge scenario a retry without a key turns into
// two charges. Used by the HTTP tests and the demo.
import { createConnection, createServer, type Socket } from 'node:net';

/** How a dropped answer reaches the client. */
export type FaultMode =
  /** TCP reset (RST): the client sees ECONNRESET. */
  | 'reset'
  /** Orderly close (FIN) without a byte of the answer: the client sees "other side closed". */
  | 'close';

/** Options of `startFaultProxy`. */
export interface FaultProxyOptions {
  /** Port of the server to forward to, on `targetHost`. */
  targetPort: number;
  /** (Default: `'127.0.0.1'`) */
  targetHost?: string;
  /** Milliseconds added before each chunk of an answer is passed on. (Default: `0`) */
  delayMs?: number;
}

/** A running proxy. */
export interface FaultProxy {
  /** The loopback port clients connect to. */
  readonly port: number;
  /** `http://127.0.0.1:<port>`, for building request URLs. */
  readonly url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Answers dropped so far. */
  readonly dropped: number;
  /**
   * Drops the next `count` answers: when the server starts answering a
   * forwarded request, the client's connection is reset or closed instead and
   * the answer is discarded. The server has done its work by then.
   */
  dropNextResponses(count: number, mode?: FaultMode): void;
  /** Delay added to every answer from now on, in milliseconds. */
  setDelay(ms: number): void;
  /** Stops listening and cuts every open connection. */
  close(): Promise<void>;
}

/**
 * Starts a proxy on 127.0.0.1 (a free port) in front of `targetPort`.
 *
 * @example
 * const proxy = await startFaultProxy({ targetPort: server.port });
 * proxy.dropNextResponses(1);                        // the next answer is lost
 * await fetchWithRetry(`${proxy.url}/payments`, …);  // the retry gets the replay
 * await proxy.close();
 */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const targetHost = options.targetHost ?? '127.0.0.1';
  let delayMs = options.delayMs ?? 0;
  const faults: FaultMode[] = [];
  const open = new Set<Socket>();
  let connections = 0;
  let dropped = 0;

  const server = createServer((client) => {
    connections++;
    const upstream = createConnection({ host: targetHost, port: options.targetPort });
    open.add(client).add(upstream);
    // HTTP/1.1 without pipelining: whatever the server sends after the client
    // spoke is the answer to that request.
    let awaitingAnswer = false;
    let cut = false;

    client.on('data', (chunk) => {
      awaitingAnswer = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (cut) return;
      if (awaitingAnswer && faults.length > 0) {
        const mode = faults.shift()!;
        cut = true;
        dropped++;
        upstream.destroy();
        if (mode === 'reset') client.resetAndDestroy();
        else client.end();
        return;
      }
      awaitingAnswer = false;
      // Equal delays fire in scheduling order, so chunks keep their order.
      if (delayMs > 0) setTimeout(() => client.writable && client.write(chunk), delayMs);
      else client.write(chunk);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => setTimeout(() => client.end(), delayMs));
    const cleanup = () => {
      open.delete(client);
      open.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', cleanup);
    upstream.on('close', () => setTimeout(cleanup, delayMs));
    client.on('error', cleanup);
    upstream.on('error', cleanup);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('fault proxy has no port');
  const port = address.port;

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get connections() {
      return connections;
    },
    get dropped() {
      return dropped;
    },
    dropNextResponses(count: number, mode: FaultMode = 'reset') {
      if (!Number.isSafeInteger(count) || count < 0) throw new RangeError('count must be a whole number');
      for (let i = 0; i < count; i++) faults.push(mode);
    },
    setDelay(ms: number) {
      if (!Number.isFinite(ms) || ms < 0) throw new RangeError('delay must be a number of milliseconds, at least 0');
      delayMs = ms;
    },
    close() {
      for (const socket of open) socket.destroy();
      open.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
