import { fetchWithRetry } from 'drizzle-idempotency/client';
import type { FaultProxy } from '../../tools/fault-proxy.js';

/** One logical request of the storm: sent `copies` times at once with one key (a double click). */
export interface StormRequest {
  path: string;
  body: unknown;
  user: string;
  key: string;
  copies: number;
}

/** What the clients saw, counted on the client side. */
export interface ClientTally {
  requests: number;
  attempts: number;
  retries: number;
  replays: number;
  inFlight409: number;
  answered: Record<string, number>;
  unanswered: number;
}

export interface StormOptions {
  concurrency: number;
  /** Chance that the proxy loses the answer to a request after the server committed. */
  dropRate: number;
  random?: () => number;
  onProgress?: (done: number, total: number) => void;
}

export const emptyTally = (): ClientTally => ({ requests: 0, attempts: 0, retries: 0, replays: 0, inFlight409: 0, answered: {}, unanswered: 0 });

/**
 * Sends every request through the fault proxy with fetchWithRetry, `concurrency`
 * at a time, losing answers at `dropRate`. Retries are fast (the demo must be
 * quick) but shaped as in production: full jitter, one key per logical request.
 */
export async function runStorm(proxy: FaultProxy, requests: StormRequest[], options: StormOptions): Promise<ClientTally> {
  const random = options.random ?? Math.random;
  const tally = emptyTally();
  let next = 0;
  let done = 0;
  const sendOne = async (r: StormRequest) => {
    if (random() < options.dropRate) proxy.dropNextResponses(1, random() < 0.5 ? 'reset' : 'close');
    tally.requests++;
    try {
      const res = await fetchWithRetry(
        `${proxy.url}${r.path}`,
        { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': r.user }, body: JSON.stringify(r.body) },
        {
          idempotencyKey: r.key,
          retries: 8,
          baseDelay: 20,
          maxDelay: 400,
          timeout: 5_000,
          maxRetryAfter: 200,
          onRetry: (event) => {
            if (event.response?.status === 409) tally.inFlight409++;
          },
        },
      );
      await res.arrayBuffer();
      tally.attempts += res.attempts;
      tally.retries += res.attempts - 1;
      if (res.replayed) tally.replays++;
      tally.answered[res.status] = (tally.answered[res.status] ?? 0) + 1;
    } catch (error) {
      const attempts = (error as { attempts?: number }).attempts ?? 1;
      tally.attempts += attempts;
      tally.retries += attempts - 1;
      tally.unanswered++;
    }
  };
  const worker = async () => {
    while (next < requests.length) {
      const r = requests[next++]!;
      await Promise.all(Array.from({ length: r.copies }, () => sendOne(r)));
      options.onProgress?.(++done, requests.length);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return tally;
}
