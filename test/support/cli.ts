// The CLI as its tests run it: a child process per command, from the sources.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** How a command ended, and all it printed. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A running command. */
export interface StartedCli {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** When it ended and its output closed. */
  done: Promise<CliRun>;
  /** What it printed on stdout so far. */
  stdout(): string;
  /** What it printed on stderr so far. */
  stderr(): string;
}

/**
 * Starts `drizzle-idempotency …args` from the sources. Its environment is this
 * process's without DATABASE_URL, plus `env`: a command sees a database only
 * when the test gives it one.
 */
export function startCli(args: string[], env: Record<string, string> = {}): StartedCli {
  const { DATABASE_URL: _ignored, ...inherited } = process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<CliRun>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, done, stdout: () => stdout, stderr: () => stderr };
}
