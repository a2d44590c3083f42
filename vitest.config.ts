import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = fileURLToPath(new URL('./src/', import.meta.url));

export default defineConfig({
  resolve: {
    // The package's public name, as examples use it, maps to the sources (as in tsconfig paths).
    alias: [
      { find: /^drizzle-idempotency$/, replacement: `${src}index.ts` },
      { find: /^drizzle-idempotency\/(.+)$/, replacement: `${src}$1.ts` },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'examples/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // Files run one at a time: the concurrency tests open ~60 connections each,
    // and a stock PostgreSQL allows 100.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
