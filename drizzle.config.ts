import { defineConfig } from 'drizzle-kit';

// Drives `npm run migrations:generate`: the bundled migrations are drizzle-kit's
// output for src/schema/table.ts, committed under migrations/.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/schema/table.ts',
  out: './migrations',
});
