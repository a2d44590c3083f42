// `npm run bench`: the bench and its HTTP server run as plain JavaScript,
// bundled from their sources by esbuild, as a user's build would run the
// package. Under tsx, every closure the sources create also calls the
// `__name` helper that tsx's transpiling adds (about 25 µs of CPU per HTTP
// request for the library's, none in a build), and the hand-written
// references, with fewer closures, would pay less of it.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { SERVER_BUNDLE_ENV } from './http-server-process.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

// Each module keeps its own import.meta.url, so that the files it finds beside
// itself (migrations, child entries) resolve as from the sources.
const ownUrls: Plugin = {
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async ({ path }) => ({
      contents: (await readFile(path, 'utf8')).replaceAll('import.meta.url', JSON.stringify(pathToFileURL(path).href)),
      loader: 'ts',
    }));
  },
};

const bundle = async (name: string): Promise<string> => {
  const outfile = `${ROOT}bench/bundle/${name}.mjs`;
  await build({ entryPoints: [`${ROOT}bench/${name}.ts`], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', plugins: [ownUrls], logLevel: 'error' });
  return outfile;
};

const [run, server] = await Promise.all([bundle('run'), bundle('http-server')]);
const child = spawn(process.execPath, [run, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, [SERVER_BUNDLE_ENV]: server } });
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
