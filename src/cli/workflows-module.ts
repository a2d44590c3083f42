import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isWorkflow, type AnyWorkflow } from '../leased/workflow.js';
import { CliError, EXIT, oneLine, usageError } from './errors.js';

/** The workflows a module exports, and where it was found. */
export interface WorkflowsModule {
  path: string;
  workflows: AnyWorkflow[];
}

/**
 * Imports the module at `path` (relative to the working directory) and
 * collects every export that is a workflow, each once (a workflow exported
 * under two names is one workflow; two workflows of one name are refused). A module that is not there, or exports
 * no workflow, is a usage error (exit code 2); one that throws while loading
 * is a failure (exit code 1) with its own message.
 *
 * @example
 * const { workflows } = await loadWorkflows('./dist/workflows.js');
 */
export async function loadWorkflows(path: string): Promise<WorkflowsModule> {
  const absolute = resolve(path);
  // Checked first: a module that is there but misses one of its own imports is its failure, not a bad flag.
  if (!existsSync(absolute) || !statSync(absolute).isFile()) throw usageError(`complete: --workflows: no module file at ${absolute}`);
  let exports: Record<string, unknown>;
  try {
    exports = (await import(pathToFileURL(absolute).href)) as Record<string, unknown>;
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === 'ERR_UNKNOWN_FILE_EXTENSION') {
      throw usageError(`complete: --workflows: node cannot load ${absolute} as it is; build it to JavaScript, or run the CLI under tsx (NODE_OPTIONS='--import tsx')`);
    }
    throw new CliError(EXIT.failure, `complete: loading ${absolute} failed: ${oneLine(error)}`, { cause: error });
  }
  const workflows = [...new Set(Object.values(exports).filter(isWorkflow))];
  if (workflows.length === 0) {
    throw usageError(`complete: ${absolute} exports no workflow: export those made by defineWorkflow(), e.g. export const payOrder = defineWorkflow('shop.pay', ...)`);
  }
  // Two workflows under one name: the completer could not tell which one resumes a key of that name.
  const byName = new Map<string, AnyWorkflow>();
  for (const w of workflows) {
    if (byName.has(w.name)) throw usageError(`complete: ${absolute} exports two workflows named ${JSON.stringify(w.name)}: give each workflow its own name`);
    byName.set(w.name, w);
  }
  return { path: absolute, workflows };
}
