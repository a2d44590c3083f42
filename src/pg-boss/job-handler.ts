import type { IdempotencyOptions } from '../core/options.js';
import type { Jsonified } from '../core/result.js';
import type { IdempotencyDatabase, TransactionOf } from '../driver/database.js';
import { idempotentHandler } from '../messages/handler.js';
import type { MessageContext } from '../messages/consume-once.js';

/** A pg-boss job as its workers receive it (`PgBoss.Job` has these). */
export interface JobLike<D> {
  id: string;
  name: string;
  data: D;
}

/**
 * A pg-boss work handler (`boss.work(queue, handler)`) that consumes each job
 * of the batch once, in a transaction of its own, keyed by the job id in the
 * scope `pg-boss:<queue>` (or `options.scope`). A redelivered job (its worker
 * crashed or timed out, or the batch failed after it) replays its stored
 * result. Returns the results in the batch's order; pg-boss stores them as the
 * jobs' output.
 *
 * @example
 * await boss.work('welcome-email', idempotentJobHandler(db, async (tx, job, { downstreamKey }) => {
 *   await mailApi.send(job.data.to, { idempotencyKey: downstreamKey('welcome') });
 *   return { sent: true };
 * }));
 */
export function idempotentJobHandler<TDb extends IdempotencyDatabase, D, T>(
  db: TDb,
  handle: (tx: TransactionOf<TDb>, job: JobLike<D>, context: MessageContext) => Promise<T>,
  options: Omit<IdempotencyOptions, 'fingerprint'> = {},
): (jobs: JobLike<D>[]) => Promise<Jsonified<T>[]> {
  const consume = idempotentHandler<JobLike<D>, T, TransactionOf<TDb>>({ scope: (job) => `pg-boss:${job.name}`, ...options, messageId: (job) => job.id }, handle);
  return async (jobs) => {
    const results: Jsonified<T>[] = [];
    // One after another: a job that fails leaves those before it committed, and pg-boss retries the batch.
    for (const job of jobs) results.push((await consume(db, job)).value);
    return results;
  };
}
