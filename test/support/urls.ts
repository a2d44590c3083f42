/** Database every test file of one run clones (migrations applied); named per
 * run, so two runs against one shared server never drop each other's. */
export const templateDatabaseFor = (pid: number) => `drizzle_idempotency_template_${pid}`;

/** The same server, another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}
