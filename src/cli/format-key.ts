import type { EvictedKey } from '../ops/evict.js';
import type { InspectedKey } from '../ops/inspect.js';
import { formatBytes, formatSpan } from './format.js';

/** `key "order-1" in scope "tenant-7"`: quoted, so that spaces and odd characters show. */
export const keyName = (key: string, scope: string) => `key ${JSON.stringify(key)} in scope ${JSON.stringify(scope)}`;

const when = (at: Date, now: Date) => {
  const ms = now.getTime() - at.getTime();
  return `${at.toISOString()} (${ms >= 0 ? `${formatSpan(ms)} ago` : `in ${formatSpan(-ms)}`})`;
};

// C0 and C1 controls and DEL: a stored fingerprint is any text the application gave.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Text as stored, printed as is unless it holds control characters: then as a JSON string, so it stays on its line and never drives the terminal. */
const printable = (text: string) => (CONTROL.test(text) ? escapeC1(JSON.stringify(text)) : text);

/** JSON text with DEL and the C1 controls escaped too (JSON.stringify escapes only C0): some terminals act on them. */
const escapeC1 = (json: string) => json.replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** What the next call with this key meets, in the words of the HTTP layer and the errors table. */
function nextCall(k: InspectedKey): string {
  if (k.status === 'claimed') return 'waits for the live transaction holding the key, or gets 409 IDEMPOTENCY_IN_FLIGHT';
  if (k.locked) return 'waits for the live transaction holding the row (a call taking the key over, a sweep, an evict), or gets 409';
  if (k.status === 'started') {
    if (k.lockedUntil !== null && k.lockedUntil > k.now) return 'gets 409 IDEMPOTENCY_IN_FLIGHT until the lease runs out';
    if (k.lockedUntil !== null) return 'resumes the leased work (a retry of the same workflow, or the completer): its lease ran out';
    return 'gets 409 IDEMPOTENCY_IN_FLIGHT: no result was stored and no lease runs; `evict --force` removes the row';
  }
  if (k.expired) return 'runs again: the key expired (the sweep deletes the row)';
  if (k.status === 'failed') return 'gets 500 IDEMPOTENCY_WORKFLOW_FAILED: the leased work failed on its last attempt';
  return 'replays the stored response (another request body or fingerprint gets 422 IDEMPOTENCY_KEY_REUSED)';
}

/** Leased work's facts, for a key that has them: never the steps' results, the input or the owner token. */
function leasedRows(k: InspectedKey): [string, string][] {
  if (k.workflow === null && !k.hasOwnerToken) return [];
  return [
    ['workflow', k.workflow === null ? '-' : printable(k.workflow)],
    ['recovery', k.recoveryPoint === null ? 'no step recorded yet' : `after step ${printable(k.recoveryPoint)}`],
    ['steps', k.recordedSteps.length === 0 ? 'none recorded' : k.recordedSteps.map(printable).join(', ')],
    ['attempts', String(k.attempts)],
    ['owner', k.hasOwnerToken ? 'a run owns it (owner token set; not shown)' : 'none'],
  ];
}

/** `inspect` for people: one aligned line per fact, the response (when asked for) last. */
export function formatInspected(k: InspectedKey, table: string): string {
  const none = '-';
  const rows: [string, string][] = [
    ['status', k.status === 'claimed' ? 'claimed: a live transaction holds the key and has not committed' : k.status],
    ['in flight', k.inFlight ? 'yes' : 'no'],
    ['locked', k.locked ? 'yes, by a live transaction' : 'no'],
    ['created', k.createdAt ? when(k.createdAt, k.now) : none],
    ['completed', k.completedAt ? when(k.completedAt, k.now) : none],
    ['expires', k.expiresAt ? `${when(k.expiresAt, k.now)}${k.expired ? ', expired' : ''}` : none],
    ['lease', k.lockedUntil ? `${when(k.lockedUntil, k.now)}, ${k.lease === 'held' ? 'held' : 'ran out or released'}` : 'none'],
    ['fingerprint', k.fingerprint === null ? none : printable(k.fingerprint)],
    ['response', k.responseBytes === null ? none : `${formatBytes(k.responseBytes)}${'response' in k ? '' : ' (--show-response prints it)'}`],
    ...leasedRows(k),
    ['next call', nextCall(k)],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = [`${table}: ${keyName(k.key, k.scope)} at ${k.now.toISOString()} (database clock)`, ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`)];
  if ('response' in k && k.responseBytes !== null) lines.push('response:', escapeC1(JSON.stringify(k.response, null, 2) ?? 'undefined'));
  return lines.join('\n');
}

/** The line `evict` ends with: what it removed. Never the response. */
export function formatEvicted(e: EvictedKey, table: string): string {
  const facts = [
    `status ${e.status}${e.expired ? ' (expired)' : ''}`,
    `created ${e.createdAt.toISOString()}`,
    e.completedAt ? `completed ${e.completedAt.toISOString()}` : 'never completed',
    `response ${e.responseBytes === null ? 'none' : formatBytes(e.responseBytes)}`,
  ];
  if (e.workflow !== null) facts.push(`workflow ${printable(e.workflow)}, attempt ${e.attempts}, steps ${e.recordedSteps.length === 0 ? 'none' : e.recordedSteps.map(printable).join(', ')}`);
  const after =
    e.status === 'started' && e.recordedSteps.length > 0
      ? 'the next call with it runs the workflow from the start: it repeats the recorded steps (their downstream keys are the same)'
      : 'the next call with it runs again';
  return `evict: removed ${keyName(e.key, e.scope)} from ${table} (${facts.join(', ')}); ${after}`;
}
