// Declarations the README's pg-boss outbox example assumes: a database, the
// signups and e-mail log tables, and a function that calls your e-mail API
// with an idempotency key (here the fake one of the demo, at MAIL_API_URL).
import { drizzle } from 'drizzle-orm/node-postgres';
import { pgTable, serial, text } from 'drizzle-orm/pg-core';

export const db = drizzle(process.env.DATABASE_URL!);
const mailApiUrl = process.env.MAIL_API_URL ?? 'http://127.0.0.1:8025';

export const signups = pgTable('signups', { email: text('email').primaryKey() });
export const emailLog = pgTable('email_log', { id: serial('id').primaryKey(), jobId: text('job_id').notNull(), to: text('to').notNull() });

/** POST to the e-mail API; it delivers once per idempotency key. Throws unless 2xx, so that the job is retried. */
export async function sendEmail(idempotencyKey: string, mail: { to: string; subject: string }): Promise<void> {
  const response = await fetch(`${mailApiUrl}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
    body: JSON.stringify(mail),
  });
  if (!response.ok) throw new Error(`e-mail API answered ${response.status}`);
}
