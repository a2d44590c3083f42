import { appendFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One e-mail the fake mail API accepted. */
export interface Delivery {
  key: string;
  to: string;
  subject: string;
  /** What the e-mail is about (an order id), for audits; optional. */
  ref?: string;
}

export interface MailApiOptions {
  port?: number;
  /** Share of sends answered 500 without delivering, as a flaky provider does. (Default: 0) */
  failRate?: number;
  random?: () => number;
  /** A JSON-lines file each delivery is appended to. */
  logPath?: string;
}

/**
 * A fake transactional e-mail API, as a real one behaves: `POST /messages`
 * with an `Idempotency-Key` header delivers once per key (a repeat answers 200
 * with the first delivery, `duplicate: true`), `GET /messages` lists the
 * deliveries. `failNext(n)` makes the next n sends answer 500 without
 * delivering, as a provider's outage does; `failRate` does so at random.
 */
export async function startMailApi(options: MailApiOptions = {}) {
  const random = options.random ?? Math.random;
  const deliveries: Delivery[] = [];
  const byKey = new Map<string, Delivery>();
  let failures = 0;
  let attempts = 0;
  let duplicates = 0;
  let outages = 0;
  const server = createServer((req, res) => {
    const answer = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/messages') return answer(200, deliveries);
    if (req.method !== 'POST' || req.url !== '/messages') return answer(404, { error: 'not found' });
    void readJson(req).then(async (body) => {
      attempts++;
      const key = req.headers['idempotency-key'];
      const { to, subject, ref } = (body ?? {}) as Partial<Delivery>;
      if (typeof key !== 'string' || !key || typeof to !== 'string' || typeof subject !== 'string') return answer(400, { error: 'key, to and subject required' });
      if (failures > 0 || random() < (options.failRate ?? 0)) {
        if (failures > 0) failures--;
        outages++;
        return answer(500, { error: 'injected outage' });
      }
      const seen = byKey.get(key);
      if (seen) {
        duplicates++;
        return answer(200, { ...seen, duplicate: true });
      }
      const delivery: Delivery = typeof ref === 'string' ? { key, to, subject, ref } : { key, to, subject };
      byKey.set(key, delivery);
      deliveries.push(delivery);
      if (options.logPath) await appendFile(options.logPath, `${JSON.stringify({ ...delivery, at: new Date().toISOString() })}\n`);
      return answer(201, { ...delivery, duplicate: false });
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    deliveries: () => [...deliveries],
    /** Sends seen (the 500s and the repeats included), 500s answered, repeats dropped, e-mails delivered. */
    stats: () => ({ attempts, outages, duplicates, delivered: deliveries.length }),
    failNext(n: number) {
      failures += n;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export type MailApi = Awaited<ReturnType<typeof startMailApi>>;

/** Sends one e-mail through the API under `key`; throws on anything but 2xx, so the job is redelivered. */
export async function sendMail(url: string, key: string, mail: { to: string; subject: string; ref?: string }): Promise<{ duplicate: boolean }> {
  const response = await fetch(`${url}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify(mail),
  });
  if (!response.ok) throw new Error(`mail API answered ${response.status}`);
  return (await response.json()) as { duplicate: boolean };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
