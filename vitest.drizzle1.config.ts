import { fileURLToPath } from 'node:url';
import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.js';

// The suite against drizzle-orm 1.0 (a release candidate), installed apart in
// .data/drizzle1 by scripts/test-drizzle1.sh: every `drizzle-orm` import of the
// sources and tests resolves to that copy. Node loads it as it is (it lives in a
// node_modules folder), so its own imports stay inside it, and `pg` is the one
// of this project.
const drizzle1 = fileURLToPath(new URL('./.data/drizzle1/node_modules/drizzle-orm/', import.meta.url));

export default mergeConfig(
  base,
  defineConfig({
    resolve: {
      alias: [
        { find: /^drizzle-orm$/, replacement: `${drizzle1}index.js` },
        { find: /^drizzle-orm\/(.+)$/, replacement: `${drizzle1}$1.js` },
      ],
    },
  }),
);
