import type { ShopDb } from './db.js';
import { outbox } from './schema.js';

/** Queues the welcome e-mail in the outbox, inside the caller's transaction; the worker sends it. */
export async function queueWelcome(tx: ShopDb, email: string, requestKey: string | null): Promise<{ messageId: number; status: 'queued' }> {
  const [row] = await tx.insert(outbox).values({ kind: 'welcome', payload: { email }, requestKey }).returning({ id: outbox.id });
  return { messageId: row!.id, status: 'queued' };
}
