// The Redis idempotency middleware most Express services write for themselves,
// kept to its usual shape so the comparison is fair to it: GET the key and
// replay what is there; otherwise take a lock with SET NX EX; let the route
// run; capture the status and JSON body it answers; SET them with a 24 h TTL;
// only then send. Its blind spot is the gap between the route's COMMIT in
// Postgres and the SET in Redis: a crash there leaves the effect without the
// answer, and the retry runs the route again. The benchmark measures its
// speed, not that gap.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Redis } from 'ioredis';

export interface RedisIdempotencyOptions {
  /** Namespaces this run's keys in a Redis others share. */
  prefix: string;
  /** Who the key belongs to: one caller's key never replays to another. */
  scope: (req: Request) => string;
  /** How long a crashed request's lock blocks its key. (Default: 60) */
  lockSeconds?: number;
  /** How long an answer is replayed. (Default: 24 h) */
  resultSeconds?: number;
}

interface Stored {
  status: number;
  body: unknown;
}

// Cannot be mistaken for a stored answer, which is always a JSON object.
const LOCK = 'in-flight';

export function redisIdempotency(redis: Redis, options: RedisIdempotencyOptions): RequestHandler {
  const lockSeconds = options.lockSeconds ?? 60;
  const resultSeconds = options.resultSeconds ?? 24 * 60 * 60;

  return async (req: Request, res: Response, next: NextFunction) => {
    const key = req.get('idempotency-key');
    if (!key) return void res.status(400).json({ error: 'send an Idempotency-Key header' });
    const redisKey = `${options.prefix}${options.scope(req)}:${key}`;
    try {
      const cached = await redis.get(redisKey);
      if (cached === LOCK) return void inFlight(res);
      if (cached !== null) {
        const stored = JSON.parse(cached) as Stored;
        return void res.status(stored.status).set('idempotent-replayed', 'true').json(stored.body);
      }
      if ((await redis.set(redisKey, LOCK, 'EX', lockSeconds, 'NX')) === null) return void inFlight(res);
    } catch (error) {
      return next(error);
    }
    captureJson(res, async (status, body) => {
      // A 5xx is not an answer to keep: free the key so the retry runs at once.
      if (status >= 500) await redis.del(redisKey);
      else await redis.set(redisKey, JSON.stringify({ status, body } satisfies Stored), 'EX', resultSeconds);
    });
    next();
  };
}

/** Lets `store` see (and finish with) every JSON answer before it goes out. */
function captureJson(res: Response, store: (status: number, body: unknown) => Promise<unknown>): void {
  const send = res.json.bind(res);
  res.json = (body: unknown) => {
    store(res.statusCode, body).then(
      () => send(body),
      // The answer was not stored, so the client must not take it as final.
      () => {
        res.status(500);
        send({ error: 'could not store the idempotent answer' });
      },
    );
    return res;
  };
}

function inFlight(res: Response): void {
  res.status(409).set('retry-after', '1').json({ error: 'a request with this Idempotency-Key is in flight' });
}
