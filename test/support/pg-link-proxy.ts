// The network link between an app and PostgreSQL, as a TCP proxy the test
// controls. It reads the frontend's protocol messages to find COMMIT, sent as
// a simple query ('Q') or through the extended protocol ('P' Parse of a
// COMMIT, or 'B' Bind of a statement prepared as COMMIT, as pipelined
// drivers send it), and can cut every connection at that moment:
// - 'before': the COMMIT never reaches the server (the transaction rolls back);
// - 'during': the COMMIT is passed on and the link dies at once, whether or not
//   the server got to it;
// - 'after': the server committed, its answer is swallowed and the link dies.
// It can also hold every chunk for a random delay in both directions, in order.
import { createConnection, createServer, type Socket } from 'node:net';

export type CutMoment = 'before' | 'during' | 'after';

export interface PgLinkProxy {
  port: number;
  /** COMMITs seen so far. */
  readonly commits: number;
  /** Cuts made so far, by moment. */
  readonly cuts: Readonly<Record<CutMoment, number>>;
  /** Cuts every connection at the next COMMIT, at `moment`. One cut per call. */
  cutAtNextCommit(moment: CutMoment): void;
  /** True while a cut is armed and has not happened yet. */
  readonly armed: boolean;
  /** Every chunk waits `min + random() * (max - min)` ms, each direction in order. */
  setLatency(minMs: number, maxMs: number): void;
  close(): Promise<void>;
}

const PROTOCOL_3 = 196608;
const COMMIT = /^\s*(commit|end)\s*;?\s*$/i;

/** The NUL-terminated string at `offset` of `buffer`, and where the next field starts. */
function cstring(buffer: Buffer, offset: number): [string, number] {
  const end = buffer.indexOf(0, offset);
  return [buffer.toString('utf8', offset, end), end + 1];
}

/**
 * Listens on a free loopback port in front of the PostgreSQL at `target`.
 *
 * @example
 * const link = await startPgLinkProxy({ port: 5432 });
 * link.cutAtNextCommit('after'); // the next COMMIT succeeds, and nobody hears of it
 */
export async function startPgLinkProxy(target: { host?: string; port: number }): Promise<PgLinkProxy> {
  const open = new Set<Socket>();
  const cuts: Record<CutMoment, number> = { before: 0, during: 0, after: 0 };
  let armed: CutMoment | undefined;
  let commits = 0;
  let latency = { min: 0, max: 0 };

  const cutAll = (moment: CutMoment) => {
    cuts[moment]++;
    armed = undefined;
    for (const socket of open) socket.destroy();
    open.clear();
  };

  // Writes `chunk` to `socket` after the link's latency, never overtaking an
  // earlier chunk: one queue and one timer per direction (timers of different
  // durations that expire in the same millisecond may fire in either order).
  const delayedWriter = (socket: Socket) => {
    const queue: { at: number; chunk: Buffer }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const flush = () => {
      timer = undefined;
      while (queue.length > 0 && queue[0]!.at <= Date.now()) {
        const { chunk } = queue.shift()!;
        if (socket.writable) socket.write(chunk);
      }
      if (queue.length > 0) timer = setTimeout(flush, queue[0]!.at - Date.now());
    };
    return (chunk: Buffer) => {
      const wait = latency.min + Math.random() * (latency.max - latency.min);
      if (wait <= 0 && queue.length === 0) return void socket.write(chunk);
      queue.push({ at: Math.max(queue.at(-1)?.at ?? 0, Date.now() + wait), chunk });
      timer ??= setTimeout(flush, queue[0]!.at - Date.now());
    };
  };

  const server = createServer((client) => {
    const upstream = createConnection({ host: target.host ?? '127.0.0.1', port: target.port });
    open.add(client).add(upstream);
    const toServer = delayedWriter(upstream);
    const toClient = delayedWriter(client);
    const commitStatements = new Set<string>();
    let startup = true;
    let pending = Buffer.alloc(0);
    // Set once this connection passed a COMMIT on while an 'after' cut is armed.
    let swallowNextAnswer = false;
    let muted = false;

    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      let offset = 0;
      for (;;) {
        if (startup) {
          if (pending.length - offset < 8) break;
          const length = pending.readInt32BE(offset);
          if (pending.length - offset < length) break;
          if (pending.readInt32BE(offset + 4) === PROTOCOL_3) startup = false;
          offset += length;
          continue;
        }
        if (pending.length - offset < 5) break;
        const type = String.fromCharCode(pending[offset]!);
        const length = pending.readInt32BE(offset + 1);
        if (pending.length - offset < 1 + length) break;
        const body = pending.subarray(offset + 5, offset + 1 + length);
        let isCommit = false;
        if (type === 'Q') isCommit = COMMIT.test(cstring(body, 0)[0]);
        else if (type === 'P') {
          const [name, next] = cstring(body, 0);
          isCommit = COMMIT.test(cstring(body, next)[0]);
          if (name) {
            if (isCommit) commitStatements.add(name);
            else commitStatements.delete(name);
          }
          // A named statement prepared as COMMIT commits when it is bound, not when parsed.
          if (name) isCommit = false;
        } else if (type === 'B') {
          const [, next] = cstring(body, 0);
          isCommit = commitStatements.has(cstring(body, next)[0]);
        }
        if (isCommit) {
          commits++;
          if (armed === 'before') {
            toServer(pending.subarray(0, offset));
            return cutAll('before');
          }
          if (armed === 'during') {
            toServer(pending);
            pending = Buffer.alloc(0);
            // Let the bytes leave, but not the answer come back: on loopback
            // the server answers before any timer fires.
            armed = undefined;
            muted = true;
            setTimeout(() => cutAll('during'), latency.max);
            return;
          }
          if (armed === 'after') swallowNextAnswer = true;
        }
        offset += 1 + length;
      }
      if (offset > 0) toServer(pending.subarray(0, offset));
      pending = pending.subarray(offset);
    });

    upstream.on('data', (chunk: Buffer) => {
      if (muted) return;
      // The server's CommandComplete for COMMIT: it committed, the app must not hear it.
      if (swallowNextAnswer && armed === 'after' && chunk.includes('COMMIT\0')) return cutAll('after');
      toClient(chunk);
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
  if (typeof address !== 'object' || address === null) throw new Error('link proxy has no port');
  return {
    port: address.port,
    get commits() {
      return commits;
    },
    get cuts() {
      return { ...cuts };
    },
    get armed() {
      return armed !== undefined;
    },
    cutAtNextCommit(moment) {
      armed = moment;
    },
    setLatency(minMs, maxMs) {
      if (!(minMs >= 0 && maxMs >= minMs)) throw new RangeError('latency must be 0 <= min <= max milliseconds');
      latency = { min: minMs, max: maxMs };
    },
    close() {
      for (const socket of open) socket.destroy();
      open.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
