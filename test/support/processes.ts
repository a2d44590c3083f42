// What a run left behind, read from /proc (Linux). A run is told apart by a
// folder of its own: PostgreSQL's postmaster names its data directory in its
// command line, every server process (backends, checkpointer, ...) works in that
// directory, and every process of the run inherited the folder as TMPDIR.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { sleep } from './fixtures.js';

interface Found {
  pid: number;
  command: string;
}

async function processesMatching(test: (command: string, cwd: string, environment: string) => boolean): Promise<Found[]> {
  const found: Found[] = [];
  for (const name of (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry))) {
    const pid = Number(name);
    if (pid === process.pid) continue;
    const command = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ').trim();
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
    const environment = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    if (test(command, cwd, environment)) found.push({ pid, command });
  }
  return found;
}

/** Processes whose command line or working directory lies in `folder` (a server's, and its reaper), as `pid: command`. */
export async function processesIn(folder: string): Promise<string[]> {
  const inside = (path: string) => path === folder || path.startsWith(`${folder}/`);
  return (await processesMatching((command, cwd) => command.includes(folder) || inside(cwd))).map((p) => `${p.pid}: ${p.command}`);
}

/** Every process started with `folder` in its environment (TMPDIR), or in it as above, as `pid: command`. */
export async function processesOf(folder: string): Promise<string[]> {
  const inside = (path: string) => path === folder || path.startsWith(`${folder}/`);
  const found = await processesMatching((command, cwd, environment) => command.includes(folder) || inside(cwd) || environment.includes(folder));
  return found.map((p) => `${p.pid}: ${p.command}`);
}

/** Kills what `processesOf(folder)` finds: a test's stragglers, so they do not outlive it. */
export async function killProcessesOf(folder: string): Promise<void> {
  for (const line of await processesOf(folder)) {
    try {
      process.kill(Number(line.split(':')[0]), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * Reads `read()` until `done` holds or `timeoutMs` ran out, and returns the last
 * reading: for what settles a little after a process died (its cleanup runs in
 * another process), asserted on by the caller.
 */
export async function settled<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await sleep(100);
  }
}

export interface Launched {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  /** When the process ended (what it started may live on, holding its output open). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** When the process ended and its output closed: all of it has been read. */
  finished: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once the output matches; rejects if the process exits first. */
  waitFor(pattern: RegExp): Promise<void>;
}

/** Starts a command with its output collected; `detached` gives it a process group of its own, as a terminal does. */
export function launch(command: string, args: string[], options: { cwd?: string; env: NodeJS.ProcessEnv; detached?: boolean }): Launched {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, detached: options.detached ?? false, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    for (const w of waiters.filter((w) => w.pattern.test(output))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  type End = { code: number | null; signal: NodeJS.Signals | null };
  const exited = new Promise<End>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const finished = new Promise<End>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return {
    child,
    output: () => output,
    exited,
    finished,
    waitFor: (pattern) =>
      new Promise<void>((resolve, reject) => {
        if (pattern.test(output)) return resolve();
        waiters.push({ pattern, resolve });
        void exited.then(({ code, signal }) => reject(new Error(`exited (${code ?? signal}) before printing ${pattern}:\n${output}`)));
      }),
  };
}

/**
 * `launched.finished`, or, when it has not come within `ms`, what is known
 * instead (whether the process itself exited, and the end of its output), so
 * that a test that fails on it says why rather than timing out silently.
 */
export async function finishedWithin(launched: Launched, ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
  const first = await Promise.race([launched.finished, late]);
  clearTimeout(timer);
  if (first !== 'late') return first;
  const exited = await Promise.race([launched.exited, Promise.resolve('still running' as const)]);
  return { notFinishedAfterMs: ms, exited, outputTail: launched.output().slice(-4000) };
}
