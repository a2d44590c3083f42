import { sql } from 'drizzle-orm';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import type { MessageContext } from '../../src/messages.js';
import type { JobLike } from '../../src/pg-boss.js';
import { sendMail } from '../../examples/shop/mail-api.js';

export interface Welcome {
  to: string;
}

/** The e-mail job's database effect, whose rows the audits count: one per job. */
export const WELCOME_TABLE = `create table if not exists welcome_sent (job_id text not null, mail_key text not null)`;

/**
 * A welcome e-mail job's handler: records the send in the database, sends
 * through the mail API under the job's downstream key, then runs `after`
 * (a test's fault: throw, hang), all before the handler's COMMIT.
 */
export function welcomeHandler(mailUrl: string, after: (job: JobLike<Welcome>) => Promise<void> = async () => {}) {
  return async (tx: IdempotencyDatabase, job: JobLike<Welcome>, context: MessageContext) => {
    const mailKey = context.downstreamKey('welcome');
    await tx.execute(sql`insert into welcome_sent (job_id, mail_key) values (${job.id}, ${mailKey})`);
    const { duplicate } = await sendMail(mailUrl, mailKey, { to: job.data.to, subject: 'Welcome' });
    await after(job);
    return { mailKey, duplicate };
  };
}
