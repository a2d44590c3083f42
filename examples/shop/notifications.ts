import type PgBoss from 'pg-boss';
import { sendInTransaction } from 'drizzle-idempotency/pg-boss';
import type { ShopDb } from './db.js';

export const WELCOME_QUEUE = 'welcome-email';
export const ORDER_CONFIRMATION_QUEUE = 'order-confirmation';
export const MAIL_QUEUES = [WELCOME_QUEUE, ORDER_CONFIRMATION_QUEUE] as const;

/** What a mail job carries: whom to write, and what about (the request key, the order id). */
export interface MailJob {
  to: string;
  ref: string;
}

/**
 * Creates the mail queues once: a failed job is retried at once, up to 20
 * times; a job whose worker died expires after 5 s and is redelivered. (A
 * handler slower than that is redelivered while it runs: the second run
 * waits on the first's key, then replays.)
 */
export async function createMailQueues(boss: PgBoss): Promise<void> {
  for (const name of MAIL_QUEUES) await boss.createQueue(name, { name, retryLimit: 20, retryDelay: 0, expireInSeconds: 5 });
}

/** Enqueues the welcome e-mail in the caller's transaction: the job exists if and only if the request commits. */
export async function queueWelcome(tx: ShopDb, boss: PgBoss, email: string, requestKey: string | null): Promise<{ jobId: string; status: 'queued' }> {
  const jobId = await sendInTransaction(boss, tx, WELCOME_QUEUE, { to: email, ref: requestKey ?? email } satisfies MailJob);
  return { jobId: jobId!, status: 'queued' };
}

/** Enqueues the order's confirmation in the order's transaction. */
export async function queueOrderConfirmation(tx: ShopDb, boss: PgBoss, userId: string, orderId: string): Promise<void> {
  await sendInTransaction(boss, tx, ORDER_CONFIRMATION_QUEUE, { to: `${userId}@shop.example`, ref: orderId } satisfies MailJob);
}
