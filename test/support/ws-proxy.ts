// A WebSocket-to-TCP proxy, as Neon runs in front of its databases: each
// WebSocket carries one PostgreSQL connection, bytes either way. It lets
// @neondatabase/serverless's Pool reach the machine's PostgreSQL.
import { createConnection } from 'node:net';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

export interface WsProxy {
  /** What `neonConfig.wsProxy` returns for any host: this proxy, told where to connect. */
  address(host: string, port: number | string): string;
  /** How many WebSockets it has carried. */
  connections(): number;
  close(): Promise<void>;
}

/** Starts the proxy on a free loopback port. */
export async function startWsProxy(): Promise<WsProxy> {
  let connections = 0;
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  server.on('connection', (socket, request) => {
    const target = new URL(request.url ?? '/', 'ws://proxy').searchParams.get('address') ?? '';
    const [host, port] = target.split(':');
    connections++;
    const tcp = createConnection({ host, port: Number(port) });
    // The client may write (the startup message) before the TCP side is up: the socket buffers it.
    socket.on('message', (data: Buffer) => tcp.write(data));
    tcp.on('data', (data) => socket.send(data));
    const end = () => {
      tcp.destroy();
      socket.terminate();
    };
    socket.on('close', end);
    socket.on('error', end);
    tcp.on('close', end);
    tcp.on('error', end);
  });
  const { port } = server.address() as AddressInfo;
  return {
    connections: () => connections,
    address: (host, targetPort) => `127.0.0.1:${port}/v2?address=${host}:${targetPort}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) client.terminate();
        server.close(() => resolve());
      }),
  };
}
