import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { faultFor, NO_FAULTS, parseFaultSettings, type Fault, type FaultSettings } from './faults.js';
import { chargeByKey, ledger, recordCharge, type Charge } from './store.js';
import { fingerprintOf, GatewayRequestInvalid, parseChargeRequest, parseIdempotencyKey } from './validation.js';

export interface GatewayOptions {
  /** (Default: 0, any free port) */
  port?: number;
  /** Fault rates to start with. (Default: none) */
  faults?: Partial<FaultSettings>;
  /** A card refuses any amount above this, in minor units: 402 card_declined. (Default: 1 000 000) */
  cardLimit?: number;
  random?: () => number;
}

/** What the gateway saw and did since it started, for the demo's report. */
export interface GatewayStats {
  /** Charge requests received, repeats and refusals included. */
  requests: number;
  /** Charges created (money taken). */
  charged: number;
  /** Charges refused by the card (402), first time only. */
  declined: number;
  /** Requests answered with the key's earlier charge or refusal. */
  replayed: number;
  /** Keys sent again with another request (422). */
  reused: number;
  /** Answers dropped after charging, held past the caller's timeout, and 500s answered without charging. */
  dropped: number;
  slowed: number;
  failed500: number;
}

const problem = (type: string, code: string, message: string, extra: object = {}) => ({ error: { type, code, message, ...extra } });

/**
 * A fake payment gateway on its own ledger (schema `gateway` of `db`), shaped
 * like Stripe's charges API: `POST /v1/charges` with an `Idempotency-Key`
 * charges a key once (a repeat with the same request gets the same charge,
 * `Idempotent-Replayed: true`; with another request 422), `GET
 * /v1/charges?idempotency_key=` finds a key's charge (404: none), `GET
 * /v1/ledger` lists every charge. Faults on purpose: `POST /v1/faults` sets
 * rates, a `Gateway-Fault` header picks one for a request.
 *
 * @example
 * const gateway = await startGateway(drizzle({ client: pool }), { faults: { dropAfterCharge: 0.2 } });
 * await gatewayClient(gateway.url).charge({ amount: 1250, currency: 'EUR', reference: 'pay_1' }, { idempotencyKey: 'k1' });
 */
export async function startGateway(db: Pick<NodePgDatabase, 'execute' | 'transaction'>, options: GatewayOptions = {}) {
  const random = options.random ?? Math.random;
  const cardLimit = options.cardLimit ?? 1_000_000;
  let faults: FaultSettings = { ...NO_FAULTS, ...options.faults };
  const stats: GatewayStats = { requests: 0, charged: 0, declined: 0, replayed: 0, reused: 0, dropped: 0, slowed: 0, failed500: 0 };
  const timers = new Set<NodeJS.Timeout>();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  async function charge(req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.requests++;
    const key = parseIdempotencyKey(req.headers['idempotency-key']);
    const request = parseChargeRequest(await readJson(req));
    const fault = faultFor(req.headers['gateway-fault'], faults, random);
    if (fault === 'error-500') {
      stats.failed500++;
      return answer(res, 500, problem('api_error', 'injected_outage', 'the gateway failed before charging; retry with the same Idempotency-Key'));
    }
    const declined = request.amount > cardLimit;
    const recorded = await recordCharge(db, key, fingerprintOf(request), {
      id: `ch_${randomBytes(12).toString('hex')}`,
      ...request,
      status: declined ? 'declined' : 'succeeded',
      declineCode: declined ? 'card_declined' : null,
    });
    if (recorded.fingerprint !== fingerprintOf(request)) {
      stats.reused++;
      return answer(res, 422, problem('idempotency_error', 'idempotency_key_reused', 'this Idempotency-Key was used with another request'));
    }
    if (recorded.created) stats[recorded.charge.status === 'succeeded' ? 'charged' : 'declined']++;
    else stats.replayed++;
    await misbehave(fault, req);
    if (res.destroyed) return;
    const headers: Record<string, string> = recorded.created ? {} : { 'idempotent-replayed': 'true' };
    if (recorded.charge.status === 'declined') {
      return answer(res, 402, problem('card_error', 'card_declined', 'the card was declined', { charge: recorded.charge }), headers);
    }
    answer(res, recorded.created ? 201 : 200, recorded.charge, headers);
  }

  /** What a charged request's fault does before its answer: nothing, a dropped connection, or a long wait. */
  async function misbehave(fault: Fault | undefined, req: IncomingMessage): Promise<void> {
    if (fault === 'drop-after-charge') {
      stats.dropped++;
      req.socket.destroy();
    } else if (fault === 'slow') {
      stats.slowed++;
      await sleep(faults.slowMs);
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    const at = `${req.method} ${url.pathname}`;
    if (at === 'POST /v1/charges') return charge(req, res);
    if (at === 'GET /v1/charges') {
      const key = url.searchParams.get('idempotency_key');
      if (!key) throw new GatewayRequestInvalid(400, 'idempotency_key_required', 'send ?idempotency_key=');
      const found = await chargeByKey(db, key);
      return found ? answer(res, 200, found) : answer(res, 404, problem('invalid_request_error', 'resource_missing', 'no charge under this key'));
    }
    if (at === 'GET /v1/ledger') return answer(res, 200, { charges: await ledger(db) });
    if (at === 'POST /v1/faults') {
      faults = parseFaultSettings(await readJson(req), faults);
      return answer(res, 200, faults);
    }
    if (at === 'GET /v1/faults') return answer(res, 200, faults);
    if (at === 'GET /v1/stats') return answer(res, 200, stats);
    if (at === 'GET /healthz') return answer(res, 200, { ok: true });
    answer(res, 404, problem('invalid_request_error', 'not_found', `no route ${at}`));
  }

  const server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      if (res.headersSent || res.destroyed) return;
      if (error instanceof GatewayRequestInvalid) return answer(res, error.status, problem('invalid_request_error', error.code, error.message));
      console.error(error);
      answer(res, 500, problem('api_error', 'internal', 'internal error; retry with the same Idempotency-Key'));
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stats: (): GatewayStats => ({ ...stats }),
    /** Ends open connections and slow answers at once: a test's gateway stops without waiting. */
    async close(): Promise<void> {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type Gateway = Awaited<ReturnType<typeof startGateway>>;
export type { Charge };

function answer(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let text = '';
  for await (const chunk of req) {
    text += String(chunk);
    if (text.length > 65_536) throw new GatewayRequestInvalid(400, 'body_too_large', 'the body is over 64 KiB');
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new GatewayRequestInvalid(400, 'invalid_json', 'the body is not valid JSON');
  }
}
