// `lookupFirst` on a node-postgres pool the library checks connections out of
// has two ways to send the lookup, and which is cheaper depends on how often
// it finds a stored answer:
// - alone, before the transaction: a replay is that one SELECT, but every
//   first execution pays a round trip more;
// - in the same write as BEGIN and the claim: a first execution pays no round
//   trip for it, but a replay also runs BEGIN, the claim (which finds the key
//   and does nothing) and a ROLLBACK.
// Each pool keeps a moving share of lookups that found an answer, and sends
// them alone while that share is high (a retry storm), with the transaction
// otherwise. Either way the answer is the same: only the cost differs.

/** Above this share of hits, lookups go alone: about where a replay's extra round trip and statements outweigh the round trip saved on each first execution. */
const ALONE_ABOVE = 0.4;
/** The moving share weighs the last ~32 lookups. */
const WEIGHT = 1 / 32;

const hitShares = new WeakMap<object, { share: number }>();

function shareOf(pool: object): { share: number } {
  let entry = hitShares.get(pool);
  // A pool starts as if every lookup hit: lookups go alone until first executions show they rarely do.
  if (!entry) hitShares.set(pool, (entry = { share: 1 }));
  return entry;
}

/**
 * Whether the lookup goes out alone, before the transaction (else in the same
 * write as BEGIN and the claim).
 *
 * @example
 * if (lookupGoesAlone(pool)) hit = await lookup();
 */
export function lookupGoesAlone(pool: object): boolean {
  return shareOf(pool).share > ALONE_ABOVE;
}

/**
 * Records whether a lookup on `pool` found a stored answer.
 *
 * @example
 * noteLookup(pool, hit !== undefined);
 */
export function noteLookup(pool: object, found: boolean): void {
  const entry = shareOf(pool);
  entry.share += ((found ? 1 : 0) - entry.share) * WEIGHT;
}
