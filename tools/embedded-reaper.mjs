// Watches over an embedded PostgreSQL (see embedded-db.ts) on behalf of the
// process that started it, and cleans up when that process ends without doing
// so itself: crashed, interrupted, or killed with SIGKILL, when none of its own
// code runs. Plain JavaScript, so that it starts in plain node, quickly.
//
// usage: node embedded-reaper.mjs <run folder>
//
// Its stdin is a pipe from that process, which writes one line per event:
// "+<pid>" a server process started, "-<pid>" it ended, "done" it cleaned up.
// The pipe closes when that process ends, however it ends. Without "done", the
// reaper then stops the server processes still running and deletes the folder.
// It runs in a session of its own (spawned detached) and ignores the usual
// termination signals, so a Ctrl-C or a kill of the process group that ends its
// owner does not end it before its work.
import { readFile, rm } from 'node:fs/promises';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';

const [folder] = process.argv.slice(2);
const running = new Set();
let done = false;
let pending = '';

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => {});

process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  const lines = (pending + chunk).split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines) {
    if (line === 'done') done = true;
    else if (line.startsWith('+')) running.add(Number(line.slice(1)));
    else if (line.startsWith('-')) running.delete(Number(line.slice(1)));
  }
});
// A pipe may break rather than close; both end in 'close'.
process.stdin.on('error', () => {});
process.stdin.once('close', async () => {
  if (!done) {
    await Promise.all([...running].map(stop));
    if (folder) await rm(folder, { recursive: true, force: true }).catch(() => {});
  }
  process.exit(0);
});

// An orphan becomes a zombie until the init process reaps it; where init does
// not (some containers), signal 0 still reaches it, though it is gone.
async function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return error.code === 'EPERM';
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return !/^\d+ \(.*\) Z /s.test(stat);
}

// SIGINT is PostgreSQL's fast shutdown (clients cut off, data flushed); one
// that does not stop gets SIGQUIT (immediate shutdown), then SIGKILL.
async function stop(pid) {
  for (const [signal, patienceMs] of [['SIGINT', 10_000], ['SIGQUIT', 5_000], ['SIGKILL', 5_000]]) {
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    for (let waited = 0; waited < patienceMs; waited += 50) {
      if (!(await alive(pid))) return;
      await sleep(50);
    }
  }
}
