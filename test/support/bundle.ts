// A child process's TypeScript entry bundled into one plain ES module: started
// with `node --import tsx`, each child spent about half a second of CPU loading
// tsx and transpiling the sources, which on a two-core machine made the tests
// that start many children at once wait on the CPU, not on what they test.
// The bundle is the same sources, built once per test file; packages stay
// imports, resolved from the project's node_modules.
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { build } from 'esbuild';
import { ROOT } from './cli.js';

const built = new Map<string, Promise<string>>();

/**
 * The path of `entry` (relative to the project) bundled for `node <path>`, built on first use.
 *
 * @example launch(process.execPath, [await bundled('test/support/leased-child.ts'), url], { env: process.env })
 */
export function bundled(entry: string, options: { beside?: boolean } = {}): Promise<string> {
  let path = built.get(entry);
  if (!path) {
    path = bundle(entry, options.beside ?? false);
    built.set(entry, path);
  }
  return path;
}

/**
 * `beside`: the bundle is written next to its entry (as `<name>.test-bundle.mjs`,
 * ignored by git), for an entry whose modules find files by `import.meta.url`
 * relative to themselves (the shop's migrations, the project's root): they
 * then resolve as from the sources, the entry and those modules lying equally deep.
 */
async function bundle(entry: string, beside: boolean): Promise<string> {
  const dir = beside ? dirname(join(ROOT, entry)) : join(ROOT, 'node_modules', '.cache', 'test-children');
  await mkdir(dir, { recursive: true });
  // One file an entry, rebuilt by each test file that uses it: files run one at a time.
  const outfile = join(dir, `${basename(entry, '.ts')}${beside ? '.test-bundle' : ''}.mjs`);
  await build({ entryPoints: [join(ROOT, entry)], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'error' });
  return outfile;
}
