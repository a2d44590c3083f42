import { defineConfig } from 'drizzle-kit';

// The shop's own tables, migrated with drizzle's migrator beside the library's
// migrate(): the two sets keep separate bookkeeping tables.
export default defineConfig({
  dialect: 'postgresql',
  schema: './examples/shop/schema.ts',
  out: './examples/shop/migrations',
  tablesFilter: ['shop_*'],
});
