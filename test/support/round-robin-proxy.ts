// A load balancer in front of several app processes, as small as it can be:
// each new TCP connection goes to the next backend in turn. It reads the
// Idempotency-Key of every request that passes, so a test can show that the
// duplicates of one key really reached different processes, and it can lose
// answers (the backend did the work, the client never hears of it) to make
// the clients retry.
import { createConnection, createServer, type Socket } from 'node:net';

export interface RoundRobinProxy {
  url: string;
  /** Connections handed to each backend, in the order of `targetPorts`. */
  readonly connectionsPerBackend: readonly number[];
  /** Answers the proxy lost on purpose. */
  readonly dropped: number;
  /** For each Idempotency-Key seen: the backends (indexes) its requests reached. */
  backendsOfKey(key: string): ReadonlySet<number>;
  /** Every key seen, with the backends its requests reached. */
  keys(): ReadonlyMap<string, ReadonlySet<number>>;
  close(): Promise<void>;
}

export interface RoundRobinOptions {
  targetPorts: readonly number[];
  /** Chance that an answer is lost: the client's connection is reset when the answer starts. (Default 0) */
  dropRate?: number;
  /** Source of randomness for `dropRate`, to make a run repeatable. */
  random?: () => number;
}

const KEY_HEADER = /\r\nidempotency-key:\s*([^\r\n]+)/gi;

/**
 * Listens on a free loopback port and spreads connections over `targetPorts` round-robin.
 *
 * @example
 * const proxy = await startRoundRobinProxy({ targetPorts: shops.map((s) => s.port) });
 * await fetch(`${proxy.url}/healthz`);
 */
export async function startRoundRobinProxy(options: RoundRobinOptions): Promise<RoundRobinProxy> {
  const random = options.random ?? Math.random;
  const dropRate = options.dropRate ?? 0;
  const perBackend = options.targetPorts.map(() => 0);
  const seen = new Map<string, Set<number>>();
  const open = new Set<Socket>();
  let next = 0;
  let dropped = 0;

  const server = createServer((client) => {
    const backend = next++ % options.targetPorts.length;
    perBackend[backend]!++;
    const upstream = createConnection({ host: '127.0.0.1', port: options.targetPorts[backend]! });
    open.add(client).add(upstream);
    // HTTP/1.1 without pipelining: what the backend sends after a request is its answer.
    let awaitingAnswer = false;
    client.on('data', (chunk: Buffer) => {
      for (const m of chunk.toString('latin1').matchAll(KEY_HEADER)) {
        const key = m[1]!.trim();
        if (!seen.has(key)) seen.set(key, new Set());
        seen.get(key)!.add(backend);
      }
      awaitingAnswer = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (awaitingAnswer && dropRate > 0 && random() < dropRate) {
        dropped++;
        upstream.destroy();
        client.resetAndDestroy();
        return;
      }
      awaitingAnswer = false;
      client.write(chunk);
    });
    const cleanup = () => {
      open.delete(client);
      open.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    for (const socket of [client, upstream]) {
      socket.on('close', cleanup);
      socket.on('error', cleanup);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('round-robin proxy has no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    get connectionsPerBackend() {
      return [...perBackend];
    },
    get dropped() {
      return dropped;
    },
    backendsOfKey: (key) => seen.get(key) ?? new Set(),
    keys: () => seen,
    close() {
      for (const socket of open) socket.destroy();
      open.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
