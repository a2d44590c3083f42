import type PgBoss from 'pg-boss';
import { idempotentJobHandler, type JobLike } from 'drizzle-idempotency/pg-boss';
import type { ShopDb } from './db.js';
import { sendMail } from './mail-api.js';
import { MAIL_QUEUES, WELCOME_QUEUE, type MailJob } from './notifications.js';
import { emailLog } from './schema.js';

export interface MailWorkerOptions {
  /** Whether this run of the job's handler crashes right after the mail API accepted the e-mail (before COMMIT): pg-boss redelivers it. (Default: never) */
  crashAfterSend?: (job: JobLike<MailJob>) => boolean;
  /** The queues to work. (Default: both mail queues) */
  queues?: readonly string[];
  /** Runs after each send, before COMMIT (the killed-worker demo hangs there). */
  afterSend?: (job: JobLike<MailJob>) => Promise<void>;
  /** Workers per queue, each fetching `batchSize` jobs at a time (a batch fails and is redelivered whole when one of its jobs fails). (Default: 4, 2) */
  workers?: number;
  batchSize?: number;
}

/** A handler crash the demo injects; counted, not logged. */
export class InjectedCrash extends Error {}

/**
 * Workers for the mail queues. Each job runs once (idempotentJobHandler:
 * keyed by the job id), records the e-mail in the shop's database, and sends it
 * through the mail API under the job's downstream key: a redelivered job whose
 * first run sent the e-mail and then crashed sends it again, and the API drops
 * the repeat.
 */
export async function startMailWorkers(db: ShopDb, boss: PgBoss, mailApiUrl: string, options: MailWorkerOptions = {}) {
  let crashes = 0;
  const handler = idempotentJobHandler(db, async (tx, job: JobLike<MailJob>, { downstreamKey }) => {
    const kind = job.name === WELCOME_QUEUE ? 'welcome' : 'order-confirmation';
    const mailKey = downstreamKey(kind);
    await tx.insert(emailLog).values({ jobId: job.id, kind, ref: job.data.ref, mailKey });
    const subject = kind === 'welcome' ? 'Welcome to the shop' : `Your order ${job.data.ref}`;
    await sendMail(mailApiUrl, mailKey, { to: job.data.to, subject, ref: job.data.ref });
    await options.afterSend?.(job);
    if (options.crashAfterSend?.(job)) {
      crashes++;
      throw new InjectedCrash('the worker crashed after sending');
    }
    return { mailKey };
  });
  for (const queue of options.queues ?? MAIL_QUEUES) {
    for (let i = 0; i < (options.workers ?? 4); i++) {
      await boss.work<MailJob>(queue, { pollingIntervalSeconds: 0.5, batchSize: options.batchSize ?? 2 }, handler);
    }
  }
  return {
    crashes: () => crashes,
    /** Resolves once no mail job waits, runs or awaits a retry. */
    async drain(): Promise<void> {
      for (;;) {
        const pending = await Promise.all(MAIL_QUEUES.map((q) => boss.getQueueSize(q, { before: 'completed' })));
        if (pending.every((n) => n === 0)) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}
