import { appendFile, readFile } from 'node:fs/promises';
import { eq, isNull, sql } from 'drizzle-orm';
import type { ShopDb } from './db.js';
import { outbox } from './schema.js';

/**
 * A fake SMTP server: appends each message to a JSON-lines file. Like a real
 * mail relay it drops a message whose Message-ID it has already accepted, so a
 * worker that crashes after sending but before marking the row still delivers once.
 */
export async function openMailSink(path: string) {
  const accepted = new Set<string>();
  const existing = await readFile(path, 'utf8').catch(() => '');
  for (const line of existing.split('\n').filter(Boolean)) accepted.add((JSON.parse(line) as { messageId: string }).messageId);
  return {
    async send(messageId: string, to: string, subject: string): Promise<void> {
      if (accepted.has(messageId)) return;
      await appendFile(path, `${JSON.stringify({ messageId, to, subject, at: new Date().toISOString() })}\n`);
      accepted.add(messageId);
    },
  };
}

type MailSink = Awaited<ReturnType<typeof openMailSink>>;

/** Delivers one pending message; false when none is left. Rows are locked with SKIP LOCKED, so workers share the queue. */
export async function deliverOne(db: ShopDb, sink: MailSink): Promise<boolean> {
  return db.transaction(async (tx) => {
    const [row] = await tx.select().from(outbox).where(isNull(outbox.deliveredAt)).orderBy(outbox.id).limit(1).for('update', { skipLocked: true });
    if (!row) return false;
    const { email } = row.payload as { email: string };
    await sink.send(`outbox-${row.id}@shop.example`, email, 'Welcome to the shop');
    await tx.update(outbox).set({ deliveredAt: sql`now()` }).where(eq(outbox.id, row.id));
    return true;
  });
}

/** Polls the outbox until stopped; `drain()` resolves once nothing is pending. */
export function startOutboxWorker(db: ShopDb, sink: MailSink, options: { every?: number; onError?: (error: unknown) => void } = {}) {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const tick = async () => {
    try {
      while (!stopped && (await deliverOne(db, sink)));
    } catch (error) {
      options.onError?.(error);
    }
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = tick().finally(schedule);
    }, options.every ?? 100);
    timer.unref();
  };
  schedule();
  return {
    async drain(): Promise<void> {
      await running;
      await tick();
    },
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
