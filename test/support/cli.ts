// The CLI as its tests run it: a child process per command, from the sources.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

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
  // A workflows module is TypeScript: only then does the command need tsx to load it.
  const loader = args.includes('--workflows') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, [...loader, cliBundle(), ...args], {
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

let bundle: string | undefined;

/**
 * The CLI's sources bundled into one module, built once per test file: under
 * `node --import tsx`, each command spent about half a second of CPU loading
 * tsx and transpiling, and the CLI tests run a hundred commands. It is written
 * next to src/cli/main.ts (ignored by git), so that what the CLI finds by
 * `import.meta.url` (package.json, migrations/) resolves as from the sources.
 */
function cliBundle(): string {
  if (bundle === undefined) {
    const outfile = join(ROOT, 'src', 'cli', 'main.test-bundle.mjs');
    buildSync({ entryPoints: [join(ROOT, 'src', 'cli', 'main.ts')], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'error' });
    bundle = outfile;
  }
  return bundle;
}
