// A retry storm against the shop: each logical request is sent as several
// copies at once with one Idempotency-Key (a double click, a retrying proxy),
// every copy through fetchWithRetry. What each copy finally got is kept, so a
// test can compare it with what the database holds.
import { randomUUID } from 'node:crypto';
import { fetchWithRetry } from '../../src/client.js';

export interface KeyedRequest {
  path: string;
  user: string;
  key: string;
  body: unknown;
}

export interface CopyAnswer {
  status: number;
  body: Record<string, unknown>;
  replayed: boolean;
  attempts: number;
}

export interface StormResult {
  request: KeyedRequest;
  copies: CopyAnswer[];
}

/** Builds the storm's mix: payments, orders on scarce stock, welcome e-mails (the route that answers 409 in flight). */
export function shopRequests(counts: { payments: number; orders: number; welcomes: number; sku: string }): KeyedRequest[] {
  const user = (i: number) => `user-${i % 7}`;
  return [
    ...Array.from({ length: counts.payments }, (_, i) => ({ path: '/payments', user: user(i), key: randomUUID(), body: { amount: 100 + i, currency: 'EUR' } })),
    ...Array.from({ length: counts.orders }, (_, i) => ({ path: '/orders', user: user(i), key: randomUUID(), body: { items: [{ sku: counts.sku, quantity: 1 }] } })),
    ...Array.from({ length: counts.welcomes }, (_, i) => ({ path: '/notifications/welcome', user: user(i), key: randomUUID(), body: { email: `u${i}@example.test` } })),
  ];
}

/**
 * Sends each request `copies` times at once, `concurrency` requests at a time,
 * in an interleaved order so that kinds mix. A copy that never got an answer
 * (retries exhausted) is recorded with status 0.
 *
 * @example
 * const results = await runKeyStorm(proxy.url, shopRequests({ payments: 50, orders: 20, welcomes: 10, sku: 'w' }), { copies: 3, concurrency: 12 });
 */
export async function runKeyStorm(
  baseUrl: string | (() => string),
  requests: readonly KeyedRequest[],
  options: { copies: number; concurrency: number; retries?: number; maxDelay?: number; onAnswer?: () => void },
): Promise<StormResult[]> {
  const order = [...requests].sort((a, b) => a.key.localeCompare(b.key));
  const results: StormResult[] = [];
  let next = 0;
  const send = async (r: KeyedRequest): Promise<CopyAnswer> => {
    const base = typeof baseUrl === 'string' ? baseUrl : baseUrl();
    try {
      const res = await fetchWithRetry(
        `${base}${r.path}`,
        { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': r.user }, body: JSON.stringify(r.body) },
        { idempotencyKey: r.key, retries: options.retries ?? 12, baseDelay: 20, maxDelay: options.maxDelay ?? 300, maxRetryAfter: 200, timeout: 10_000 },
      );
      const text = await res.text();
      options.onAnswer?.();
      return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, replayed: res.replayed, attempts: res.attempts };
    } catch (error) {
      return { status: 0, body: { error: String(error) }, replayed: false, attempts: (error as { attempts?: number }).attempts ?? 1 };
    }
  };
  const worker = async () => {
    while (next < order.length) {
      const request = order[next++]!;
      const copies = await Promise.all(Array.from({ length: options.copies }, () => send(request)));
      results.push({ request, copies });
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return results;
}
