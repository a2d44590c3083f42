/** Database every test file clones: the migrations are already applied. */
export const TEMPLATE_DATABASE = 'drizzle_idempotency_template';

/** The same server, another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}
