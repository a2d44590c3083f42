// A child process's TypeScript entry bundled into one plain ES module: started
// with `node --import tsx`, each child spent about half a second of CPU loading
// tsx and transpiling the sources, which on a two-core machine made the tests
// that start many children at once wait on the CPU, not on what they test.
// The bundle is the same sources, built once per test file; packages stay
// imports, resolved from the project's node_modules.
import { mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { build } from 'esbuild';
import { ROOT } from './cli.js';

const built = new Map<string, Promise<string>>();

/**
 * The path of `entry` (relative to the project) bundled for `node <path>`, built on first use.
 *
 * @example launch(process.execPath, [await bundled('test/support/leased-child.ts'), url], { env: process.env })
 */
export function bundled(entry: string): Promise<string> {
  let path = built.get(entry);
  if (!path) {
    path = bundle(entry);
    built.set(entry, path);
  }
  return path;
}

async function bundle(entry: string): Promise<string> {
  const dir = join(ROOT, 'node_modules', '.cache', 'test-children');
  await mkdir(dir, { recursive: true });
  // One file an entry, rebuilt by each test file that uses it: files run one at a time.
  const outfile = join(dir, `${basename(entry, '.ts')}.mjs`);
  await build({ entryPoints: [join(ROOT, entry)], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'error' });
  return outfile;
}
