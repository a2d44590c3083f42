import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

// Importing an entry point, in a process of its own, loads no framework: each
// framework is an optional peer that only its own adapter names, and then
// only for its types. A child process, because this one has loaded them all.
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RECORDER = join(ROOT, 'test/support/load-recorder/register.mjs');
const FRAMEWORKS = ['express', 'fastify', 'hono'];
const logs = mkdtempSync(join(tmpdir(), 'entry-loads-'));
afterAll(() => rmSync(logs, { recursive: true, force: true }));

/** The packages of node_modules that importing `modules`, in order, resolved in a fresh process. */
async function packagesLoadedBy(...modules: string[]): Promise<Set<string>> {
  const log = join(logs, `${modules.join('+').replace(/\W/g, '_')}.log`);
  const script = modules.map((m) => `await import(${JSON.stringify(m)});`).join(' ');
  await promisify(execFile)(process.execPath, ['--import', RECORDER, '--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    env: { ...process.env, LOAD_LOG: log },
  });
  const urls = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
  return new Set(urls.map((url) => url.split('/node_modules/').at(-1)!.split('/')[0]!));
}

const entries = ['index', 'schema', 'express', 'fastify', 'web', 'client'];

describe('importing an entry point', () => {
  it.each(entries)('src/%s.ts loads no framework', async (entry) => {
    const loaded = await packagesLoadedBy(`./src/${entry}.ts`);
    expect(FRAMEWORKS.filter((framework) => loaded.has(framework))).toEqual([]);
  });

  it('would see a framework that got loaded (the recorder works)', async () => {
    const loaded = await packagesLoadedBy('./src/web.ts', 'hono', 'fastify');
    expect(FRAMEWORKS.filter((framework) => loaded.has(framework))).toEqual(['fastify', 'hono']);
  });
});
