// Test-only: where the shop's payment workflow kills (or pauses) its own
// process, so the crash tests can hit every recovery point for real
// (test/demo/gateway-crash.test.ts). Unset in production: nothing happens.

/** Where a payment can be cut short, in the order a payment passes them. */
export const CRASH_POINTS = [
  /** The request arrived; no key claimed yet. */
  'before-claim',
  /** The key is claimed (committed, leased); no step ran. */
  'after-claim',
  /** The pending payment is committed (recovery point: record-intent). */
  'after-record-intent',
  /** The charge request is out; its answer has not come back. */
  'during-charge',
  /** The gateway charged and answered; the answer is not recorded yet. */
  'after-charge-before-record',
  /** The charge's answer is recorded (recovery point: charge). */
  'after-charge',
  /** The payment is marked paid (recovery point: mark-paid); the key is not completed yet. */
  'after-mark-paid',
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

/**
 * Kills this process with SIGKILL at `point` when SHOP_CRASH_AT names it, or
 * stops it with SIGSTOP (a pause as long as the test likes: a GC pause, a
 * frozen VM) when SHOP_PAUSE_AT does. No cleanup runs either way, as in a
 * real crash.
 *
 * @example
 * crashPoint('after-record-intent');
 */
export function crashPoint(point: CrashPoint): void {
  if (process.env.SHOP_CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
  if (process.env.SHOP_PAUSE_AT === point) {
    // Once: after the test resumes it, the process carries on as a late, zombie owner.
    delete process.env.SHOP_PAUSE_AT;
    console.log(`paused at ${point}`);
    process.kill(process.pid, 'SIGSTOP');
  }
}
