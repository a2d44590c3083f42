import type { IdempotencyStats } from '../ops/stats.js';
import type { SweepProgress, SweepResult } from '../ops/sweep.js';

// Fixed locale: output must not change with the machine's settings.
const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** 1234567 → '1,234,567'. */
export const formatCount = (n: number) => integer.format(n);

/** Bytes in binary units: '8.0 KiB', '12.3 MiB'. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A span of time the way people read it: '850 ms', '4.2 s', '3 min', '5 h 12 min', '2 d 3 h'. */
export function formatSpan(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

const batches = (n: number) => `${formatCount(n)} ${n === 1 ? 'batch' : 'batches'}`;

const rate = (rows: number, ms: number) => (ms > 0 ? `${formatCount((rows * 1_000) / ms)} rows/s` : 'n/a rows/s');

/** The throttled progress line of a running sweep. */
export function formatSweepProgress(p: SweepProgress): string {
  return `sweep: ${formatCount(p.deleted)} rows deleted in ${batches(p.batches)}, ${rate(p.deleted, p.elapsedMs)}`;
}

/** The line a sweep ends with; `signal` names what stopped it, if one did. */
export function formatSweepResult(r: SweepResult, budget?: { signal?: string; timeBudgetMs?: number }): string {
  const what = `${formatCount(r.deleted)} expired keys deleted in ${batches(r.batches)}, ${formatSpan(r.durationMs)}, ${rate(r.deleted, r.durationMs)}`;
  switch (r.stoppedBy) {
    case 'drained':
      return `sweep: done, ${what}`;
    case 'aborted':
      return `sweep: stopped by ${budget?.signal ?? 'request'} between batches, ${what}`;
    case 'timeBudget':
      return `sweep: time budget of ${formatSpan(budget?.timeBudgetMs ?? r.durationMs)} used, ${what}; expired keys may remain`;
  }
}

/** The leased key waiting longest: enough to `inspect` it, never its input. */
function oldestWaiting(s: IdempotencyStats): string {
  const w = s.oldestWaiting;
  if (!w) return 'none';
  const ago = (at: Date) => `${formatSpan(Math.max(0, s.now.getTime() - at.getTime()))} ago`;
  const point = w.recoveryPoint === null ? 'no step recorded' : `recovery point ${JSON.stringify(w.recoveryPoint)}`;
  return (
    `key ${JSON.stringify(w.key)} in scope ${JSON.stringify(w.scope)}, workflow ${JSON.stringify(w.workflow)}, created ${ago(w.createdAt)}, ` +
    `${point}, attempt ${formatCount(w.attempts)}${w.leaseEndedAt ? `, lease ended ${ago(w.leaseEndedAt)}` : ''}`
  );
}

/** `stats` for people: one aligned line per figure. */
export function formatStats(s: IdempotencyStats, table: string): string {
  const oldest = s.oldestLive
    ? `created ${s.oldestLive.createdAt.toISOString()} (${formatSpan(s.now.getTime() - s.oldestLive.createdAt.getTime())} ago), ` +
      `expires ${s.oldestLive.expiresAt.toISOString()}`
    : 'none';
  const rows: [string, string][] = [
    ['live keys', formatCount(s.live)],
    ['expired keys', formatCount(s.expired) + (s.expired > 0 ? '  (`drizzle-idempotency sweep` deletes them)' : '')],
    ['in progress', formatCount(s.inProgress)],
    ['  leased, held', `${formatCount(s.leasedHeld)}  (a process is running them)`],
    ['  leased, waiting', formatCount(s.leasedWaiting) + (s.leasedWaiting > 0 ? '  (lease ran out or released: a retry or `drizzle-idempotency complete` resumes them)' : '')],
    ['  oldest waiting', oldestWaiting(s)],
    ['failed keys', formatCount(s.failed) + (s.failed > 0 ? '  (every call gets 500 IDEMPOTENCY_WORKFLOW_FAILED until they expire)' : '')],
    ['oldest live key', oldest],
    ['table size', formatBytes(s.tableBytes)],
    ['index size', formatBytes(s.indexBytes)],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return [`${table} at ${s.now.toISOString()} (database clock)`, ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`)].join('\n');
}

/**
 * The line a pass of `complete` ends with.
 *
 * @example
 * formatCompleted({ completed: 3, failed: 0, retried: 1, skipped: 0 }) // 'complete: 3 completed, 0 failed, 1 retried, 0 skipped'
 */
export function formatCompleted(c: { completed: number; failed: number; retried: number; skipped: number }): string {
  return `complete: ${formatCount(c.completed)} completed, ${formatCount(c.failed)} failed, ${formatCount(c.retried)} retried, ${formatCount(c.skipped)} skipped`;
}
