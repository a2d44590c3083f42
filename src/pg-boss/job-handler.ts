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
 * result. Returns the results in the batch's order; pg-boss 10 stores them as
 * the job's output for a batch of one job only. Every job of the batch runs,
 * whichever fails; then the handler throws the failure (an `AggregateError`
 * for several), and pg-boss fails every job of the batch: the others,
 * committed, replay on their retry but count it, and end failed
 * (dead-lettered, if so configured) beside a job that keeps failing.
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
  // `?? `, not a spread: { scope: undefined } must not put every queue in the scope '' (two queues may hold one job id).
  const scope = options?.scope ?? ((job: JobLike<D>) => `pg-boss:${job.name}`);
  const consume = idempotentHandler<JobLike<D>, T, TransactionOf<TDb>>({ ...options, scope, messageId: (job) => job.id }, handle);
  return async (jobs) => {
    const results: Jsonified<T>[] = [];
    const failures: unknown[] = [];
    // One after another, each to its end: a job that fails must not keep those after it from
    // running (pg-boss would fail them with it, retry after retry, until they ended failed unrun).
    for (const job of jobs) {
      try {
        results.push((await consume(db, job)).value);
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, `${failures.length} of the batch's ${jobs.length} jobs failed`);
    return results;
  };
}
