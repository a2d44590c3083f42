import { GatewayDeclinedError, GatewayOutcomeUnknownError } from './errors.js';
import type { Fault, FaultSettings } from './faults.js';
import type { GatewayStats } from './app.js';
import type { Charge, ChargeRequest } from './store.js';

export { GatewayDeclinedError, GatewayError, GatewayOutcomeUnknownError, type UnknownOutcomeReason } from './errors.js';
export type { Charge, ChargeRequest, Fault, FaultSettings, GatewayStats };

export interface CallOptions {
  /** Aborts the request (the lease was lost, the caller gave up): an unknown outcome. */
  signal?: AbortSignal;
  /** (Default: 5 000) */
  timeoutMs?: number;
}

export interface ChargeOptions extends CallOptions {
  /** The gateway charges a key once: send the same key on every retry of one payment. */
  idempotencyKey: string;
  /** A fault for this request only (tests): sent as the `Gateway-Fault` header. */
  fault?: Fault;
}

interface Problem {
  error?: { code?: string; message?: string; charge?: Charge };
}

/**
 * A typed client of the fake gateway. `charge` answers the charge, or throws
 * GatewayDeclinedError (4xx: not charged, do not retry) or
 * GatewayOutcomeUnknownError (timeout, dropped connection, 5xx: maybe charged;
 * retry with the same key or ask `findCharge`).
 *
 * @example
 * const gateway = gatewayClient('http://127.0.0.1:4010');
 * const charge = await gateway.charge({ amount: 1250, currency: 'EUR', reference: 'pay_1' }, { idempotencyKey: key, timeoutMs: 2_000 });
 */
export function gatewayClient(baseUrl: string) {
  /** One request; every failure to get a whole answer becomes GatewayOutcomeUnknownError. */
  async function send(method: string, path: string, options: CallOptions, headers: Record<string, string> = {}, body?: unknown) {
    const timeoutMs = options.timeoutMs ?? 5_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    try {
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
      // The body is part of the answer: a connection dropped while reading it is as unknown as one dropped before.
      return { status: response.status, body: (await response.json()) as unknown };
    } catch (error) {
      if (timeout.aborted) throw new GatewayOutcomeUnknownError('timeout', `no answer from the gateway within ${timeoutMs} ms`, undefined, { cause: error });
      if (options.signal?.aborted) throw new GatewayOutcomeUnknownError('aborted', 'the request was aborted before its answer', undefined, { cause: error });
      throw new GatewayOutcomeUnknownError('network', `the connection to the gateway failed: ${(error as Error).message}`, undefined, { cause: error });
    }
  }

  /** A non-2xx answer as the error it means. */
  function failure(status: number, body: unknown): Error {
    const problem = (body as Problem).error ?? {};
    const message = problem.message ?? `the gateway answered ${status}`;
    if (status >= 500 || status === 409 || status === 429) return new GatewayOutcomeUnknownError('server-error', message, status);
    return new GatewayDeclinedError(status, problem.code ?? 'unknown', message, problem.charge);
  }

  return {
    url: baseUrl,

    /**
     * Charges `input` under `idempotencyKey`: once per key, however often it is sent.
     *
     * @example
     * const { id } = await gateway.charge({ amount: 500, currency: 'USD', reference: 'pay_9' }, { idempotencyKey: ctx.downstreamKey('charge') });
     */
    async charge(input: ChargeRequest, options: ChargeOptions): Promise<Charge> {
      const headers: Record<string, string> = { 'idempotency-key': options.idempotencyKey };
      if (options.fault) headers['gateway-fault'] = options.fault;
      const { status, body } = await send('POST', '/v1/charges', options, headers, input);
      if (status === 200 || status === 201) return body as Charge;
      throw failure(status, body);
    },

    /**
     * The charge recorded under `idempotencyKey` (succeeded or declined), or
     * undefined when there is none: how a caller whose answer was lost learns
     * what happened.
     *
     * @example
     * const charge = await gateway.findCharge(key); // undefined: never charged, safe to charge
     */
    async findCharge(idempotencyKey: string, options: CallOptions = {}): Promise<Charge | undefined> {
      const { status, body } = await send('GET', `/v1/charges?idempotency_key=${encodeURIComponent(idempotencyKey)}`, options);
      if (status === 200) return body as Charge;
      if (status === 404) return undefined;
      throw failure(status, body);
    },

    /**
     * Every charge the gateway recorded, oldest first, for audits.
     *
     * @example
     * const paid = (await gateway.ledger()).filter((c) => c.status === 'succeeded');
     */
    async ledger(options: CallOptions = {}): Promise<Charge[]> {
      const { status, body } = await send('GET', '/v1/ledger', options);
      if (status !== 200) throw failure(status, body);
      return (body as { charges: Charge[] }).charges;
    },

    /**
     * Sets fault rates for every charge from now on; fields left out stay as they are.
     *
     * @example
     * await gateway.setFaults({ dropAfterCharge: 0.1, slowRate: 0.1, slowMs: 1_500, error500Rate: 0.1 });
     */
    async setFaults(settings: Partial<FaultSettings>, options: CallOptions = {}): Promise<FaultSettings> {
      const { status, body } = await send('POST', '/v1/faults', options, {}, settings);
      if (status !== 200) throw failure(status, body);
      return body as FaultSettings;
    },

    /**
     * What the gateway did since it started: charges, replays, faults.
     *
     * @example
     * const { dropped, slowed, failed500 } = await gateway.stats();
     */
    async stats(options: CallOptions = {}): Promise<GatewayStats> {
      const { status, body } = await send('GET', '/v1/stats', options);
      if (status !== 200) throw failure(status, body);
      return body as GatewayStats;
    },
  };
}

export type GatewayClient = ReturnType<typeof gatewayClient>;
