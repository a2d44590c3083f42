// One autocannon run against one route: the same JSON payment from every
// connection, with an Idempotency-Key chosen per request by `nextKey`.
import autocannon from 'autocannon';

export const BENCH_USER = 'bench-user';
export const PAYMENT_BODY = JSON.stringify({ amount: 1999, currency: 'EUR' });

export interface LoadOptions {
  url: string;
  connections: number;
  seconds: number;
  nextKey: () => string;
}

export interface LoadResult {
  /** 2xx answers per second: what the route got done. */
  rps: number;
  /** Latency of all answers, in milliseconds. */
  p50: number;
  p99: number;
  non2xx: number;
  /** Connection errors and timeouts. */
  errors: number;
}

export async function load(options: LoadOptions): Promise<LoadResult> {
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.seconds,
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-user-id': BENCH_USER },
    body: PAYMENT_BODY,
    requests: [
      {
        setupRequest: (request) => ({
          ...request,
          headers: { ...request.headers, 'idempotency-key': options.nextKey() },
        }),
      },
    ],
  });
  return {
    rps: result['2xx'] / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

/** Keys never sent before: every request is a first execution. */
export function freshKeys(prefix: string): () => string {
  let n = 0;
  return () => `${prefix}-${(n++).toString(36)}`;
}

/** The same completed keys round and round: every request is a replay. */
export function cycledKeys(keys: readonly string[]): () => string {
  let n = 0;
  return () => keys[n++ % keys.length]!;
}
