// Module hooks for a child process: every module resolved from node_modules
// is appended to the file named by LOAD_LOG, so a test can tell which
// packages an import pulled in.
import { appendFileSync } from 'node:fs';
import process from 'node:process';

export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (process.env.LOAD_LOG && result.url.includes('/node_modules/')) appendFileSync(process.env.LOAD_LOG, `${result.url}\n`);
  return result;
}
