// The process part 5 kills. It starts its requests, stops each one at the
// kill point (holding it there forever), says "parked" once all are there,
// and waits for SIGKILL: no handler, no cleanup, as when a host dies.
import { drizzle } from 'drizzle-orm/node-postgres';
import { Redis } from 'ioredis';
import pg from 'pg';
import { CRASH_SPEC_VARIABLE, request, type CrashSpec } from './crash-approaches.js';
import { interceptQueries } from './pg-tap.js';

const spec = JSON.parse(process.env[CRASH_SPEC_VARIABLE] ?? '') as CrashSpec;
let parked = 0;
const park = () => {
  if (++parked === spec.requests.length) process.stdout.write('parked\n');
  return new Promise<never>(() => {});
};

const pool = new pg.Pool({ connectionString: spec.url, max: spec.requests.length });
// Both approaches end their Postgres transaction with this COMMIT; the Redis
// approach writes its result only after it returns.
interceptQueries(pool, (text, send) => {
  if (text !== 'commit') return send();
  return spec.point === 'before-commit' ? park() : send().then(park);
});
const deps = { db: drizzle({ client: pool }), redis: new Redis(spec.redisUrl), redisOptions: spec.redisOptions };

for (const r of spec.requests) {
  request(spec.approach, deps, r).then(
    () => {
      process.stderr.write(`crash-child: request ${r.key} finished although it should have stopped at ${spec.point}\n`);
      process.exit(2);
    },
    (error: unknown) => {
      process.stderr.write(`crash-child: request ${r.key} failed: ${String(error)}\n`);
      process.exit(1);
    },
  );
}
